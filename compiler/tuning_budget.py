"""How far each workload in a tuning database has been tuned: the `trials.json` beside the records.

Per workload hash it keeps two numbers:
- `level`: the trials-per-task budget of the last tuning run that finished with this workload in it.
  A run at budget N leaves alone every workload already at level N or higher, so a workload tuned
  once is never tuned again, in any model, unless a bigger budget is asked for.
- `trials`: the trials spent on it over all runs, kept up to date while a run is in progress, so an
  interrupted run resumes with what is left of its budget instead of starting over.

Files written by older versions map each hash to one int (the level, all of it spent); they still load.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nasc.errors import CompileError
from nasc.fsutil import write_json_atomic

BUDGET_FILE = "trials.json"


@dataclass(frozen=True)
class WorkloadBudget:
    """One workload's tuning so far."""

    level: int = 0
    trials: int = 0


class TuningBudget:
    """The per-workload levels and trial counts of one tuning database folder."""

    def __init__(self, path: Path, entries: dict[str, WorkloadBudget]) -> None:
        self.path = path
        self._entries = entries

    @classmethod
    def load(cls, database_dir: Path) -> TuningBudget:
        """Read `database_dir/trials.json` (an empty budget when there is none)."""
        path = database_dir / BUDGET_FILE
        if not path.exists():
            return cls(path, {})
        try:
            raw = json.loads(path.read_text())
            entries = {str(h): _parse_entry(v) for h, v in raw.items()}
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise CompileError(
                f"{path}: not a tuning budget file ({exc}). Delete it to tune this database's workloads again; "
                "the tuning records beside it stay valid."
            ) from exc
        return cls(path, entries)

    def get(self, workload: str) -> WorkloadBudget:
        """The workload's level and trials (zeros when it was never tuned here)."""
        return self._entries.get(workload, WorkloadBudget())

    def set_trials(self, workload: str, trials: int) -> None:
        """Record that `trials` have been spent on `workload` over all runs so far."""
        old = self.get(workload)
        if trials != old.trials:  # an unchanged count adds no entry for a workload never tuned
            self._entries[workload] = WorkloadBudget(old.level, trials)

    def complete(self, workloads: Iterable[str], level: int) -> None:
        """A run at `level` trials per task has finished with these workloads in it."""
        for workload in workloads:
            old = self.get(workload)
            self._entries[workload] = WorkloadBudget(max(old.level, level), old.trials)

    def save(self) -> None:
        """Write the file atomically."""
        write_json_atomic(self.path, {h: {"level": e.level, "trials": e.trials} for h, e in self._entries.items()})


def _parse_entry(value: object) -> WorkloadBudget:
    if isinstance(value, int) and not isinstance(value, bool):
        return WorkloadBudget(level=value, trials=value)
    if isinstance(value, dict):
        return WorkloadBudget(level=int(value["level"]), trials=int(value["trials"]))
    raise TypeError(f"unexpected entry {value!r}")

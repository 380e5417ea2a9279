"""MetaSchedule tuning with a database kept on disk per target and reused across runs and models.

A workload (one fused operator with its shapes, for one target) is tuned up to the requested
number of trials once; later compiles of any model that contains it spend no trials on it.
The budget is per task, so every task gets its share (TVM-NOTES.md: a global budget starves most).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from nasc.errors import CompileError
from nasc.fsutil import atomic_copy, write_json_atomic

WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
BUDGET_FILE = "trials.json"
_MS_LOGGER = "tvm.s_tir.meta_schedule"
BUILD_TIMEOUT_S = 300.0
RUN_TIMEOUT_S = 120.0


class TuningReporter(Protocol):
    """Receives tuning progress (the CLI draws a progress bar from it)."""

    def tuning_started(self, total_trials: int, tasks: int) -> None:
        """Tuning begins: `total_trials` new trials over `tasks` tasks."""

    def tuning_progress(self, trials_done: int, best_estimate_ms: float | None) -> None:
        """After each measured batch: trials so far and the best estimated model latency."""


@dataclass(frozen=True)
class TaskTuning:
    """One tuning task (a fused operator) and what this run did with it."""

    name: str
    workload: str
    weight: int
    trials_before: int
    trials_run: int
    best_us: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "name": self.name,
            "workload": self.workload,
            "weight": self.weight,
            "trials_before": self.trials_before,
            "trials_run": self.trials_run,
            "best_us": self.best_us,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskTuning:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


@dataclass(frozen=True)
class TuningSummary:
    """What tuning did for one compile."""

    database_dir: str | None
    trials_per_task: int
    trials_run: int = 0
    seconds: float = 0.0
    tasks: tuple[TaskTuning, ...] = field(default_factory=tuple)
    records_applied: int = 0

    @property
    def tasks_tuned(self) -> int:
        """Tasks that received new trials in this run."""
        return sum(1 for t in self.tasks if t.trials_run > 0)

    @property
    def tasks_reused(self) -> int:
        """Tasks whose records came from earlier runs only."""
        return sum(1 for t in self.tasks if t.trials_run == 0 and t.trials_before > 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "database_dir": self.database_dir,
            "trials_per_task": self.trials_per_task,
            "trials_run": self.trials_run,
            "seconds": round(self.seconds, 3),
            "tasks_total": len(self.tasks),
            "tasks_tuned": self.tasks_tuned,
            "tasks_reused": self.tasks_reused,
            "records_applied": self.records_applied,
            "tasks": [t.to_dict() for t in self.tasks],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TuningSummary:
        """Inverse of :meth:`to_dict`."""
        return cls(
            database_dir=data["database_dir"],
            trials_per_task=int(data["trials_per_task"]),
            trials_run=int(data.get("trials_run", 0)),
            seconds=float(data.get("seconds", 0.0)),
            tasks=tuple(TaskTuning.from_dict(t) for t in data.get("tasks", [])),
            records_applied=int(data.get("records_applied", 0)),
        )


def population_size(trials_per_task: int) -> int:
    """Evolutionary-search population: TVM's 512 for real budgets, smaller for a handful of trials.

    Generating and scoring 512 candidates costs the same whether 2 or 64 get measured.
    """
    return max(64, min(512, 16 * trials_per_task))


def database_dir_for(cache_dir: Path, target: Any) -> Path:
    """The tuning database folder for one target and TVM version."""
    import tvm

    from .target import target_dict

    attrs = target_dict(target)
    payload = json.dumps({"target": attrs, "tvm": tvm.__version__}, sort_keys=True)
    digest = hashlib.sha256(payload.encode()).hexdigest()[:12]
    label = "-".join(str(attrs.get(k)) for k in ("kind", "mcpu") if attrs.get(k)) or "target"
    return cache_dir / "tuning" / f"{label}-{digest}"


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _quiet_meta_schedule() -> None:
    logger = logging.getLogger(_MS_LOGGER)
    logger.setLevel(logging.WARNING)
    if not any(isinstance(f, _DropLevelHint) for f in logger.filters):
        logger.addFilter(_DropLevelHint())


class _DropLevelHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Logging level set to")


def _workload_hash(mod: Any) -> str:
    from tvm_ffi import structural_hash

    return f"{structural_hash(mod) & 0xFFFFFFFFFFFFFFFF:016x}"


class _Tally:
    """Trials and best run time per task, shared by the progress callbacks of one tuning run."""

    def __init__(self, reporter: TuningReporter | None) -> None:
        self.reporter = reporter
        self.done = 0
        self.trials: dict[int, int] = {}
        self.best_secs: dict[int, float] = {}
        self.weights: dict[int, int] = {}

    def callback(self, task_ids: list[int], weights: list[int]):
        """A MeasureCallback for one tune_tasks call whose local task ids map to `task_ids`."""
        import numpy as np
        from tvm.ir.utils import derived_object
        from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

        tally = self
        for task, weight in zip(task_ids, weights, strict=True):
            tally.weights[task] = weight

        @derived_object
        class Progress(PyMeasureCallback):
            def apply(self, task_scheduler, task_id, candidates, builder_results, runner_results) -> None:
                task = task_ids[int(task_id)]
                tally.done += len(candidates)
                tally.trials[task] = tally.trials.get(task, 0) + len(candidates)
                for result in runner_results:
                    if result.error_msg is None and result.run_secs:
                        secs = float(np.mean([float(s) for s in result.run_secs]))
                        if 0 < secs < tally.best_secs.get(task, float("inf")):
                            tally.best_secs[task] = secs
                if tally.reporter is not None:
                    estimate = sum(tally.best_secs[t] * tally.weights[t] for t in tally.best_secs) * 1e3
                    tally.reporter.tuning_progress(tally.done, estimate if tally.best_secs else None)

        return Progress()


def tune_module(
    mod: Any,
    target: Any,
    database_dir: Path,
    trials_per_task: int,
    *,
    trials_per_iteration: int = 16,
    seed: int = 0,
    reporter: TuningReporter | None = None,
) -> TuningSummary:
    """Tune every task of `mod` (already lowered by build.lower_for_tuning) up to `trials_per_task`.

    Tasks already tuned to that budget in `database_dir` get no trials. New records are merged
    into the database atomically once tuning succeeds; a failure leaves the database as it was.
    """
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.relax_integration import extract_tasks, extracted_tasks_to_tune_contexts

    from .pooled_builder import PooledLocalBuilder

    started = time.perf_counter()
    _quiet_meta_schedule()
    extracted = [t for t in extract_tasks(mod, target) if not t.mod.attrs.get("tirx.is_scheduled", False)]
    with _locked(database_dir):
        budget_path = database_dir / BUDGET_FILE
        budget: dict[str, int] = json.loads(budget_path.read_text()) if budget_path.exists() else {}
        hashes = [_workload_hash(t.dispatched[0]) for t in extracted]
        needs = [max(0, trials_per_task - budget.get(h, 0)) for h in hashes]
        tally = _Tally(reporter)
        todo = [i for i, n in enumerate(needs) if n > 0]
        if todo:
            with tempfile.TemporaryDirectory(prefix=".run-", dir=database_dir) as work:
                work_dir = Path(work)
                for name in (WORKLOAD_FILE, RECORD_FILE):
                    if (database_dir / name).exists():
                        shutil.copyfile(database_dir / name, work_dir / name)
                database = ms.database.JSONDatabase(work_dir=str(work_dir))
                workers = max(1, (os.cpu_count() or 1))
                # Generous timeouts: a busy 2-core machine takes far longer than TVM's 30 s defaults to
                # start a worker and build, and a timed-out candidate is a wasted trial.
                builder = PooledLocalBuilder(max_workers=workers, timeout_sec=BUILD_TIMEOUT_S)
                runner = ms.runner.LocalRunner(timeout_sec=RUN_TIMEOUT_S)
                if reporter is not None:
                    reporter.tuning_started(sum(needs[i] for i in todo), len(todo))
                # One tune_tasks call per distinct remaining budget (usually one).
                for need in sorted({needs[i] for i in todo}):
                    group = [i for i in todo if needs[i] == need]
                    contexts, weights = extracted_tasks_to_tune_contexts(
                        [extracted[i] for i in group], str(work_dir), seed=seed,
                        strategy=ms.search_strategy.EvolutionarySearch(population_size=population_size(need)),
                    )
                    callback = tally.callback(group, [int(w) for w in weights])
                    try:
                        ms.tune_tasks(
                            tasks=contexts,
                            task_weights=weights,
                            work_dir=str(work_dir),
                            max_trials_global=need * len(group),
                            max_trials_per_task=need,
                            num_trials_per_iter=min(trials_per_iteration, need),
                            database=database,
                            builder=builder,
                            runner=runner,
                            measure_callbacks=[*ms.MeasureCallback.create("default"), callback],
                        )
                    except Exception as exc:
                        raise CompileError(f"MetaSchedule tuning failed: {type(exc).__name__}: {exc}") from exc
                    finally:
                        builder.shutdown()
                for name in (WORKLOAD_FILE, RECORD_FILE):
                    if (work_dir / name).exists():
                        atomic_copy(work_dir / name, database_dir / name)
            for i in todo:
                budget[hashes[i]] = trials_per_task
            write_json_atomic(budget_path, budget)
    tasks = tuple(
        TaskTuning(
            name=t.task_name,
            workload=hashes[i],
            weight=int(t.weight),
            trials_before=trials_per_task - needs[i],
            trials_run=tally.trials.get(i, 0) if todo else 0,
            best_us=round(tally.best_secs[i] * 1e6, 3) if todo and i in tally.best_secs else None,
        )
        for i, t in enumerate(extracted)
    )
    return TuningSummary(
        database_dir=str(database_dir),
        trials_per_task=trials_per_task,
        trials_run=tally.done if todo else 0,
        seconds=time.perf_counter() - started,
        tasks=tasks,
    )


def open_database(database_dir: Path):  # -> ms.Database | None
    """The on-disk database, or None when nothing was ever tuned for this target."""
    from tvm.s_tir import meta_schedule as ms

    if not (database_dir / RECORD_FILE).exists():
        return None
    return ms.database.JSONDatabase(work_dir=str(database_dir), allow_missing=False)

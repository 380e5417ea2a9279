"""Stage records of a resumable run: each stage's inputs hashed, its outputs hashed, written atomically.

A stage's record lives in ``DIR/stages/NAME.json``. It is written twice: ``state = "started"`` with the
hash of the stage's inputs before any work, ``state = "done"`` with the hash of its outputs after the
outputs are in place. A run that resumes reuses a stage only when the record is done, the inputs hash
is the same and the outputs on disk still hash to what was recorded; a stage that is started with the
same inputs may continue from its own checkpoint (the search does).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from nasc.errors import InputError
from nasc.fsutil import sha256_file, write_json_atomic
from nasc.records import field_of, read_record

StageState = Literal["started", "done"]


def digest(data: Any) -> str:
    """sha256 of `data` as canonical JSON (sorted keys, no spaces): the same content, the same hash."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def files_digest(paths: list[Path]) -> str:
    """sha256 over the names and contents of `paths` (a missing file makes a different hash)."""
    return digest({p.name: sha256_file(p) if p.is_file() else None for p in paths})


@dataclass(frozen=True)
class StageRecord:
    """DIR/stages/NAME.json."""

    SCHEMA: ClassVar[str] = "nasc.stage/1"

    stage: str
    state: StageState
    inputs_sha256: str
    inputs: dict[str, Any]
    outputs_sha256: str = ""
    outputs: dict[str, Any] | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The record's JSON content."""
        return {"schema": self.SCHEMA, "stage": self.stage, "state": self.state,
                "inputs_sha256": self.inputs_sha256, "inputs": self.inputs, "outputs_sha256": self.outputs_sha256,
                "outputs": self.outputs, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | Path) -> StageRecord:
        """Inverse of :meth:`to_dict` (errors name `source` and the key)."""
        state = field_of(data, "state", str, source)
        if state not in ("started", "done"):
            raise InputError(f"{source}: key 'state' must be 'started' or 'done', not {state!r}")
        return cls(
            stage=field_of(data, "stage", str, source), state=state,  # type: ignore[arg-type]
            inputs_sha256=field_of(data, "inputs_sha256", str, source),
            inputs=field_of(data, "inputs", dict, source),
            outputs_sha256=field_of(data, "outputs_sha256", str, source),
            outputs=field_of(data, "outputs", dict, source, optional=True),
            seconds=field_of(data, "seconds", float, source),
        )


class StageBook:
    """The stage records of one output folder."""

    def __init__(self, out_dir: Path) -> None:
        self.folder = Path(out_dir) / "stages"

    def path(self, stage: str) -> Path:
        return self.folder / f"{stage}.json"

    def read(self, stage: str) -> StageRecord | None:
        """The stage's record; None when there is none or it cannot be read (the stage then runs again)."""
        path = self.path(stage)
        if not path.is_file():
            return None
        try:
            return StageRecord.from_dict(read_record(path, StageRecord.SCHEMA, "it is rewritten when the stage runs"),
                                         path)
        except InputError:
            return None

    def write(self, record: StageRecord) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path(record.stage), record.to_dict())

    def any_done(self) -> bool:
        """Whether an earlier run finished at least one stage here."""
        return self.folder.is_dir() and any(
            (r := self.read(p.stem)) is not None and r.state == "done" for p in self.folder.glob("*.json"))

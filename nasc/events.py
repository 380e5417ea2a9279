"""Progress as typed events: library code reports, the CLI (and the report) render.

One stream for every long piece of work (compile, tuning, latency-table builds, searches), so no
library module prints and every consumer sees the same facts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a stage, or a line worth keeping about it.

    ``step``/``total`` count the stage's units (trials, batches, blocks, networks); ``total`` is None
    for an event that only carries a message. ``label`` names the current span of units (e.g.
    "epoch 3/12"): a renderer starts a new bar when the stage or label changes. ``figures`` holds the
    numbers that matter for the stage (best latency so far, loss, accuracy), units in the names.
    """

    stage: str
    step: int = 0
    total: int | None = None
    label: str = ""
    message: str = ""
    figures: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if not self.stage:
            raise ValueError("a progress event needs a stage")
        if self.step < 0 or (self.total is not None and self.total < 0):
            raise ValueError(f"{self.stage}: step and total must be >= 0")
        object.__setattr__(self, "figures", MappingProxyType(dict(self.figures)))

    @classmethod
    def note(cls, stage: str, message: str) -> ProgressEvent:
        """An event that only says something (a stage begins, an epoch ended)."""
        return cls(stage, message=message)


Progress = Callable[[ProgressEvent], None]

# The stage name of a multi-stage run's own events: step k of n stages, label = the stage now running.
# A renderer keeps its bar beside the running stage's bar instead of replacing one with the other.
RUN_STAGE = "pipeline"


def ignore_progress(event: ProgressEvent) -> None:
    """The default consumer: drops every event."""

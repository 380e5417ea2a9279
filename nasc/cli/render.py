"""Renders the library's progress events with rich on stderr: one live bar per stage, lines for notes."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from nasc.events import ProgressEvent

# The figure worth showing beside a stage's bar, by name.
SHOWN_FIGURES = {
    "best_estimate_ms": "best est. {:.3f} ms",
    "train_loss": "loss {:.3f}",
    "valid_accuracy": "valid acc {:.3f}",
    "expected_ms": "exp. {:.3f} ms",
    "median_ms": "median {:.3f} ms",
}


class EventRenderer:
    """Call it with each ProgressEvent; use as a context manager so the bar is closed on errors."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._key: tuple[str, str] | None = None
        self._last_figures: dict[str, Mapping[str, float]] = {}  # a stage's latest figures, shown beside its bar

    def __enter__(self) -> EventRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, event: ProgressEvent) -> None:
        if event.figures:
            self._last_figures[event.stage] = event.figures
        if event.message:  # the message is text, never markup: paths and keys may hold brackets
            line = Text.assemble((f"{event.stage:>7}", "bold cyan"), " ", event.message)
            (self._progress.console if self._progress is not None else self.console).print(line, highlight=False)
        if event.total is None:
            return
        key = (event.stage, event.label)
        if key != self._key:
            self._open(event)
        assert self._progress is not None and self._task is not None
        figures = event.figures or self._last_figures.get(event.stage, {})
        shown = " ".join(SHOWN_FIGURES[k].format(v) for k, v in figures.items() if k in SHOWN_FIGURES)
        self._progress.update(self._task, completed=event.step, total=event.total, figures=shown)

    def _open(self, event: ProgressEvent) -> None:
        if self._progress is None:
            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[figures]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=self.console, transient=True,
            )
            self._progress.start()
        if self._task is not None:
            self._progress.remove_task(self._task)
        description = f"{event.stage} {event.label}".strip()
        self._task = self._progress.add_task(description, total=event.total, figures="")
        self._key = (event.stage, event.label)

    def close(self) -> None:
        """Stop the live bar (idempotent)."""
        if self._progress is not None:
            self._progress.stop()
        self._progress = None
        self._task = None
        self._key = None

"""Renders the library's progress events with rich on stderr: one live bar per stage, lines for notes.

A multi-stage run (events of stage RUN_STAGE) gets a bar of its own, "stage k/n NAME", kept above the
running stage's bar."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from nasc.events import RUN_STAGE, ProgressEvent

# The figure worth showing beside a stage's bar, by name.
SHOWN_FIGURES = {
    "best_estimate_ms": "best est. {:.3f} ms",
    "train_loss": "loss {:.3f}",
    "valid_accuracy": "valid acc {:.3f}",
    "expected_ms": "exp. {:.3f} ms",
    "median_ms": "median {:.3f} ms",
}


class _StageRemaining(TimeRemainingColumn):
    """Time left of a stage's bar; none for the run's bar (its stages differ too much in length to guess)."""

    def render(self, task: Task) -> Text:
        return Text("") if task.fields.get("whole_run") else super().render(task)


class EventRenderer:
    """Call it with each ProgressEvent; use as a context manager so the bar is closed on errors."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._key: tuple[str, str] | None = None
        self._run_task: TaskID | None = None
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
        if event.stage == RUN_STAGE:
            self._run_bar(event)
            return
        key = (event.stage, event.label)
        if key != self._key:
            self._open(event)
        assert self._progress is not None and self._task is not None
        figures = event.figures or self._last_figures.get(event.stage, {})
        shown = " ".join(SHOWN_FIGURES[k].format(v) for k, v in figures.items() if k in SHOWN_FIGURES)
        self._progress.update(self._task, completed=event.step, total=event.total, figures=shown)

    def _start(self) -> Progress:
        if self._progress is None:
            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[figures]}"), TimeElapsedColumn(), _StageRemaining(),
                console=self.console, transient=True,
            )
            self._progress.start()
        return self._progress

    def _run_bar(self, event: ProgressEvent) -> None:
        progress = self._start()
        description = f"stage {min(event.step + 1, event.total or 1)}/{event.total} {event.label}".strip()
        if self._run_task is None:
            self._run_task = progress.add_task(description, total=event.total, figures="", whole_run=True)
        progress.update(self._run_task, description=description, completed=event.step, total=event.total)

    def _open(self, event: ProgressEvent) -> None:
        progress = self._start()
        if self._task is not None:
            progress.remove_task(self._task)
        description = f"{event.stage} {event.label}".strip()
        self._task = progress.add_task(description, total=event.total, figures="")
        self._key = (event.stage, event.label)

    def close(self) -> None:
        """Stop the live bar (idempotent)."""
        if self._progress is not None:
            self._progress.stop()
        self._progress = None
        self._task = None
        self._run_task = None
        self._key = None

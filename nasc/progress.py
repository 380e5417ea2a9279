"""Rich progress for long work: one reporter the library calls, drawn on stderr."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from nasc.compiler.pipeline import CompileReporter


class RichCompileReporter(CompileReporter):
    """Prints compile stages and draws a tuning bar (trials done / budget, best estimate)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress: Progress | None = None
        self._task = None

    def stage(self, name: str, detail: str = "") -> None:
        """Print a stage line; closes the tuning bar if one is open."""
        self._close()
        self.console.print(f"[bold cyan]{name:>7}[/] {detail}", highlight=False)

    def tuning_started(self, total_trials: int, tasks: int) -> None:
        """Open the tuning bar."""
        self._progress = Progress(
            TextColumn("   trials"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[best]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("tune", total=total_trials, best=f"{tasks} tasks")

    def tuning_progress(self, trials_done: int, best_estimate_ms: float | None) -> None:
        """Advance the bar; show the summed best latency of the tuned operators."""
        if self._progress is None or self._task is None:
            return
        best = f"best est. {best_estimate_ms:.3f} ms" if best_estimate_ms is not None else ""
        self._progress.update(self._task, completed=trials_done, best=best)

    def _close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._task = None

    def close(self) -> None:
        """Stop any open bar."""
        self._close()

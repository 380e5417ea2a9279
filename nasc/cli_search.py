"""`nasc search`: ProxylessNAS on the device's measured latency (thin: parse, load, one call, print)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nasc.cli import console, get_config, handles_errors, main, out
from nasc.config import Config


def device_predictor(config: Config, device_name: str | None) -> Any:
    """The measured LatencyPredictor for a device: the cache's latency table (+ fitted line) from nasc.devices."""
    from nasc.devices.predictor import load_predictor

    return load_predictor(config.cache_dir(), config.device(device_name))


class _RichSearchProgress:
    """One bar per epoch of each stage; a summary line per finished epoch."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=True,
        )
        self.task: Any = None
        self.current: tuple[str, int] | None = None

    def __call__(self, event: Any) -> None:
        key = (event.stage, event.epoch)
        if key != self.current:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task(f"{event.stage} {event.epoch}/{event.epochs}", total=event.steps)
            self.current = key
        self.progress.update(self.task, completed=event.step)
        if event.summary:
            self.progress.console.print(f"  {event.summary}", highlight=False)


@main.command("search")
@click.option("--device", "device_name", default=None, help="Target device (default: [project].device).")
@click.option("--latency-ms", type=float, default=None, help="Latency budget T in ms on the device.")
@click.option("--epochs", type=int, default=None, help="Search epochs (weight and architecture steps alternate).")
@click.option("--warmup-epochs", type=int, default=None, help="Weight-only epochs before the search.")
@click.option("--final-epochs", type=int, default=None, help="Training epochs of the derived network.")
@click.option("--arch-algo", type=click.Choice(["grad", "rl"]), default=None,
              help="Architecture update: binary-gate gradient or REINFORCE.")
@click.option("--latency-loss", type=click.Choice(["mul", "add"]), default=None,
              help="mul: CE*(log LAT/log T)^beta; add: CE + lambda*LAT/T.")
@click.option("--final-init", type=click.Choice(["scratch", "inherit"]), default=None,
              help="Train the derived network from scratch or from the supernet's weights.")
@click.option("--seed", type=int, default=None, help="Seed for the data split, initialisation and sampling.")
@click.option("--resume", is_flag=True, help="Continue from the output folder's checkpoint.")
@click.option("-o", "--output", "output", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: [project].output_dir/search).")
@click.pass_context
@handles_errors
def search_command(ctx: click.Context, device_name: str | None, latency_ms: float | None, epochs: int | None,
                   warmup_epochs: int | None, final_epochs: int | None, arch_algo: str | None,
                   latency_loss: str | None, final_init: str | None, seed: int | None, resume: bool,
                   output: str | None) -> None:
    """Search the most accurate network within a latency budget on DEVICE; train it; write arch.json,
    model.pt and search.json."""
    from nasc.search.proxyless import run_search

    config = get_config(ctx).with_section(
        "search", latency_ms=latency_ms, epochs=epochs, warmup_epochs=warmup_epochs, final_epochs=final_epochs,
        arch_algo=arch_algo, latency_loss=latency_loss, final_init=final_init, seed=seed,
    )
    predictor = device_predictor(config, device_name)
    started = time.monotonic()
    reporter = _RichSearchProgress()
    with reporter.progress:
        result = run_search(config, predictor, Path(output) if output else None, progress=reporter, resume=resume)
    out.print(f"arch          {result.arch}")
    out.print(f"predicted     {result.predicted_ms:.4f} ms on {config.device(device_name).name}")
    if result.budget_ms is not None:
        verdict = "[green]within budget[/]" if result.meets_budget else "[bold red]OVER BUDGET[/]"
        out.print(f"budget        {result.budget_ms:.4f} ms  {verdict}")
    out.print(f"test accuracy {result.test_accuracy:.4f}  (valid {result.valid_accuracy:.4f})")
    out.print(f"written       {result.arch_path}, {result.model_path}, {result.search_path}")
    console.print(f"[dim]search took {time.monotonic() - started:.0f} s[/]")

"""`nasc search` and `nasc export` (thin: parse, load, one call, print)."""

from __future__ import annotations

import time
import tomllib
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from nasc.cli import console, get_config, handles_errors, json_option, main, out, print_json
from nasc.cli.render import EventRenderer
from nasc.errors import ConfigError
from nasc.pipeline.export import export_search
from nasc.pipeline.search import search_on_device
from nasc.search.path_level.start import start_setting
from nasc.search.settings import strategy_table
from nasc.search.strategies import MODULES


def strategy_settings(values: tuple[str, ...]) -> dict[str, Any]:
    """--set KEY=VALUE pairs (VALUE read as a TOML value, plain words as strings)."""
    changes: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, for example --set epochs=12")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        changes[key.strip().replace("-", "_")] = value
    return changes


@main.command("search")
@click.option("--device", "device_name", default=None, help="Target device (default: [project].device).")
@click.option("--strategy", type=click.Choice(sorted(MODULES)), default=None,
              help="Search strategy (default: [search].strategy).")
@click.option("--latency-ms", type=float, default=None,
              help="Latency budget T: ms of the compiled artifact on the device, as the latency table predicts it "
                   "(tuned at [search] table_trials; default: [search].latency_ms).")
@click.option("--final-epochs", type=int, default=None, help="Training epochs of the derived network.")
@click.option("--seed", type=int, default=None, help="Seed for the data split, initialisation and sampling.")
@click.option("--start", default=None, metavar="ARCH",
              help="path-level: the network to grow: an arch.json or a search's output folder (e.g. a proxyless "
                   "result), 'mobilenetv2', 'uniform:CELL' or one cell per layer (default: [search.path_level] "
                   "start).")
@click.option("--set", "strategy_values", multiple=True, metavar="KEY=VALUE",
              help="A setting of the strategy's own table, e.g. --set epochs=12 --set arch_algo=rl for "
                   "[search.proxyless]; repeatable.")
@click.option("--resume", is_flag=True, help="Continue from the output folder's checkpoint.")
@click.option("-o", "--output", "output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: [project].output_dir/search).")
@json_option
@click.pass_context
@handles_errors
def search_command(ctx: click.Context, device_name: str | None, strategy: str | None, latency_ms: float | None,
                   final_epochs: int | None, seed: int | None, start: str | None,
                   strategy_values: tuple[str, ...], resume: bool,
                   output: Path | None, as_json: bool) -> None:
    """Search the most accurate network within a latency budget on DEVICE; train it; write arch.json,
    model.pt and search.json."""
    config = get_config(ctx).with_section("search", strategy=strategy, latency_ms=latency_ms,
                                          final_epochs=final_epochs, seed=seed)
    config = config.with_section(strategy_table(config.search.strategy), **strategy_settings(strategy_values))
    if start is not None:
        config = config.with_section("search.path_level", start=start_setting(start))
    device = config.device(device_name)
    started = time.monotonic()
    with EventRenderer(console) as render:
        result = search_on_device(config, device, output, progress=render, resume=resume)
    if as_json:
        print_json(result.to_dict())
        return
    out.print(f"arch          {result.arch}")
    out.print(f"predicted     {result.predicted_ms:.4f} ms on {device.name}")
    if result.budget_ms is not None:
        verdict = "[green]within budget[/]" if result.meets_budget else "[bold red]OVER BUDGET[/]"
        out.print(f"budget        {result.budget_ms:.4f} ms  {verdict}")
        pick = result.figures.get("budget_pick")
        if pick:
            out.print(f"picked        {escape(pick['message'])}")
    out.print(f"test accuracy {result.test_accuracy:.4f}  (valid {result.valid_accuracy:.4f})")
    out.print(f"written       {result.arch_path}, {result.model_path}, {result.search_path}")
    console.print(f"[dim]{result.strategy} search took {time.monotonic() - started:.0f} s[/]")


@main.command("export")
@click.argument("search_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="ONNX file to write (default: SEARCH_DIR/model.onnx).")
@json_option
@click.pass_context
@handles_errors
def export_command(ctx: click.Context, search_dir: Path, output: Path | None, as_json: bool) -> None:
    """Export the trained network of a finished search (arch.json + model.pt) to a checked ONNX file."""
    config = get_config(ctx)
    exported = export_search(search_dir, output, opset=config.compile.opset)
    if as_json:
        print_json(exported.to_dict())
        return
    shapes = ", ".join(f"{s.name} {list(s.shape)}" for s in exported.inputs)
    out.print(f"exported {search_dir} -> {exported.onnx_path} (opset {exported.opset}; input {shapes}; "
              f"sha256 {exported.sha256[:16]})", soft_wrap=True)

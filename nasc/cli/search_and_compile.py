"""`nasc search-and-compile`: the whole job in one command (thin: parse, one call, render)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from nasc.cli import console, get_config, handles_errors, json_option, main, out, print_json
from nasc.cli.render import EventRenderer
from nasc.cli.search import strategy_settings
from nasc.pipeline.config import load_config
from nasc.pipeline.measure import compile_settings_for
from nasc.pipeline.search_and_compile import PipelineRequest, PipelineSummary, default_out_dir, search_and_compile
from nasc.search.path_level.start import start_setting
from nasc.search.settings import strategy_table
from nasc.search.strategies import MODULES


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f} ms"


def summary_table(s: PipelineSummary) -> Table:
    """The end-of-run table a person reads."""
    table = Table(title=f"search-and-compile for {s.device}" + (" (EMULATED)" if s.emulated else ""),
                  show_header=False, title_justify="left")
    table.add_row("network", f"{s.arch}  ({s.strategy})")
    table.add_row("test accuracy", f"{s.test_accuracy:.4f}")
    table.add_row("latency", f"predicted {_ms(s.predicted_ms)}, measured {_ms(s.measured_ms)} on {s.device} "
                             f"(range {s.measured_spread_ms[0]:.4f}-{s.measured_spread_ms[1]:.4f}); "
                             f"prediction error {s.prediction_error_pct:+.1f} %")
    if s.budget_ms is None:
        table.add_row("budget", "none set (--latency-ms)")
    else:
        verdict = "[green]met[/]" if s.meets_budget else "[bold red]NOT MET[/]"
        used = f" ({s.budget_used:.0%} of it)" if s.budget_used is not None else ""
        note = f"\npicked: {escape(s.budget_note)}" if s.budget_note else ""  # it names [search.space]
        table.add_row("budget", f"{_ms(s.budget_ms)} of the tuned artifact on the device: {verdict} by the "
                                f"measured latency{used}{note}")
    detail = s.parity_detail
    noise = detail.get("reference_noise")
    noise_text = f", onnxruntime's own noise {noise:.3g}" if isinstance(noise, float) else ""
    table.add_row("parity", ("passed" if s.parity_passed else "NOT CHECKED") + (
        f": max abs err {s.parity_max_abs_err:.3g}{noise_text} on {s.parity_where}"
        if s.parity_max_abs_err is not None else f" ({s.parity_where})"))
    table.add_row("tuning", f"{s.trials_spent} new trials; {s.tasks_tuned} tasks tuned, {s.tasks_reused} reused; "
                            f"{s.records_applied} tuned ops applied")
    table.add_row("bundle", f"{s.bundle}\nsha256 {s.bundle_sha256}")
    if s.flashed_to:
        table.add_row("flashed", s.flashed_to)
    table.add_row("report", s.report)
    stages = ", ".join(f"{r.name} {r.seconds:.0f} s" if r.status == "ran" else f"{r.name} reused" for r in s.stages)
    table.add_row("time", f"{s.seconds:.0f} s ({stages})")
    return table


@main.command("search-and-compile")
@click.option("--device", "-d", "device_name", default=None,
              help="Target device from build.toml or a built-in profile (default: [project].device); "
                   "`nasc devices` lists them.")
@click.option("--latency-ms", type=float, default=None,
              help="Latency budget: ms of the compiled, tuned artifact on the device, as `nasc measure` times it "
                   "(default: [search].latency_ms). The search picks the most probable network predicted "
                   "within [search].budget_fill of it.")
@click.option("--strategy", type=click.Choice(sorted(MODULES)), default=None,
              help="Search strategy (default: [search].strategy).")
@click.option("--trials", type=click.IntRange(min=0), default=None,
              help="MetaSchedule trials per tuning task, on average, for the final compile (default: "
                   "[compile].trials, or 32 where it is 0; 0 here ships the untuned build).")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Training epochs of the searched network (default: [search].final_epochs).")
@click.option("--data", "data_source", default=None,
              help="Data: digits, fashion-mnist, a folder of class folders or an .npz (default: [data].source).")
@click.option("--seed", type=int, default=None, help="Seed for the data split, initialisation and sampling.")
@click.option("--start", default=None, metavar="ARCH",
              help="path-level: the network to grow: an arch.json or a search's output folder (e.g. a proxyless "
                   "result), 'mobilenetv2', 'uniform:CELL' or one cell per layer (default: [search.path_level] "
                   "start).")
@click.option("--set", "strategy_values", multiple=True, metavar="KEY=VALUE",
              help="A setting of the strategy's own table, e.g. --set epochs=6; repeatable.")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: [project].output_dir/run-<device>).")
@click.option("--resume", is_flag=True,
              help="Reuse the stages of an earlier run in the output folder whose inputs are unchanged.")
@click.option("--flash", "flash_port", default=None, metavar="PORT",
              help="Send the bundle to a board's receiver on this serial port at the end.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Project file (same as `nasc --config`).")
@json_option
@click.pass_context
@handles_errors
def search_and_compile_command(ctx: click.Context, device_name: str | None, latency_ms: float | None,
                               strategy: str | None, trials: int | None, epochs: int | None, data_source: str | None,
                               seed: int | None, start: str | None,
                               strategy_values: tuple[str, ...], output: Path | None,
                               resume: bool, flash_port: str | None, config_path: str | None,
                               as_json: bool) -> None:
    """Search, train, export, compile and tune, verify, measure and package a network for DEVICE.

    Every stage's result goes into the output folder with a hash of its inputs; --resume reuses what is
    unchanged. The folder ends with the bundle, report.html and run.json.
    """
    config = load_config(config_path) if config_path else get_config(ctx)
    config = config.with_section("search", strategy=strategy, latency_ms=latency_ms, final_epochs=epochs, seed=seed)
    config = config.with_section(strategy_table(config.search.strategy), **strategy_settings(strategy_values))
    if start is not None:
        config = config.with_section("search.path_level", start=start_setting(start))
    config = config.with_section("data", source=data_source)
    compile_settings = (compile_settings_for(config.compile, tuned=True) if trials is None
                        else dataclasses.replace(config.compile, trials=trials))
    config = dataclasses.replace(config, compile=compile_settings)
    device = config.device(device_name)
    request = PipelineRequest(config, device, output or default_out_dir(config, device), resume=resume,
                              flash_port=flash_port)
    with EventRenderer(console) as render:
        summary = search_and_compile(request, progress=render)
    if as_json:
        print_json(summary.to_dict())
        return
    out.print(summary_table(summary))

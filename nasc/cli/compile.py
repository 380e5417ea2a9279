"""`nasc compile`: ONNX -> tuned, verified library for a device."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from nasc.cli import console, get_config, handles_errors, json_option, main, out, print_json
from nasc.cli.render import EventRenderer
from nasc.pipeline.compile import compile_onnx

if TYPE_CHECKING:
    from nasc.compiler.verify import ParityReport


@main.command("compile")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--device", "-d", default=None,
              help="Device name from build.toml or a built-in profile (default: [project].device).")
@click.option("--trials", type=click.IntRange(min=0), default=None,
              help="MetaSchedule trials per tuning task, on average (tasks that weigh more in the run get more); "
                   "0 = no new tuning, records already in the tuning "
                   "database are still applied (default: [compile].trials).")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: <output_dir>/<model>-<device>).")
@click.option("--no-verify", is_flag=True,
              help="Do not run the artifact against onnxruntime (for devices not reachable now).")
@json_option
@click.pass_context
@handles_errors
def compile_command(ctx: click.Context, model: Path, device: str | None, trials: int | None, output: Path | None,
                    no_verify: bool, as_json: bool) -> None:
    """Compile MODEL (an .onnx file) for a device: import, tune, build, check against onnxruntime."""
    config = get_config(ctx).with_section("compile", trials=trials)
    spec = config.device(device)
    out_dir = output or config.output_dir() / f"{model.stem}-{spec.name}"
    with EventRenderer(console) as render:
        artifact = compile_onnx(model, spec, config.compile, out_dir, config.cache_dir(),
                                verify=not no_verify, progress=render)
    if as_json:
        print_json(artifact.to_dict())
        return
    table = Table(title=f"compiled {model.name} for {spec.name}", show_header=False, title_justify="left")
    table.add_row("library", str(artifact.library_path))
    table.add_row("target", f"{artifact.target_triple} {artifact.target.get('mcpu', '')}".strip())
    tuning = artifact.tuning
    if tuning.trials_per_task:
        measured = f" measured on {tuning.measured_on}" if tuning.measured_on else ""
        if tuning.emulated and "EMULATED" not in measured:
            measured += " (EMULATED timings)"
        table.add_row("tuning", f"{tuning.trials_run} new trials{measured}; {tuning.tasks_tuned} tasks tuned, "
                      f"{tuning.tasks_reused} reused from {tuning.database_dir}; {tuning.records_applied} tuned ops")
    elif tuning.records_applied:
        table.add_row("tuning", f"no new trials (--trials 0); {tuning.records_applied} tuned ops applied from "
                      f"{tuning.database_dir}")
    else:
        table.add_row("tuning", "none (--trials 0)")
    parity = artifact.parity
    if parity.checked:
        table.add_row("parity", f"{_parity_figures(parity)} vs onnxruntime on {parity.where} "
                      f"({parity.samples} inputs)")
    else:
        table.add_row("parity", f"NOT CHECKED: {parity.where}")
    table.add_row("time", f"{artifact.compile_seconds:.1f} s")
    out.print(table)


def _parity_figures(parity: ParityReport) -> str:
    """Errors, then what they were held to: onnxruntime's own noise and the tolerance (older records lack them)."""
    text = f"max abs err {parity.max_abs_err:.3g}, max rel err {parity.max_rel_err:.3g}"
    if parity.output_scale is not None and parity.tolerance_abs is not None:
        text += (f" ({parity.max_err_rel_scale or 0:.2g} of scale {parity.output_scale:.3g}); "
                 f"noise {parity.reference_noise or 0:.3g}, tolerance {parity.tolerance_abs:.3g}")
    return text

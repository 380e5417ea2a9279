"""`nasc devices`, `nasc devices emulate`, `nasc measure`, `nasc lut build`, `nasc lut show`."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from nasc.cli import console, get_config, handles_errors, json_option, main, out, print_json
from nasc.cli.render import EventRenderer
from nasc.compiler.toolchain import table_toolchain, table_trials_of
from nasc.devices.emulated.server import serve_emulated
from nasc.devices.latency_table import LatencyTable
from nasc.devices.oracle import WARMUP_MIN_MS
from nasc.devices.registry import known_device_names
from nasc.devices.spec import parse_host_port
from nasc.devices.tracker import tracker_summary
from nasc.pipeline.config import load_config
from nasc.pipeline.fidelity import fit_predictor
from nasc.pipeline.latency_table_build import build_project_table
from nasc.pipeline.measure import measure_model


@main.group("devices", invoke_without_command=True)
@click.option("--tracker", default=None, metavar="HOST:PORT", help="Also show this tracker's keys and servers.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.pass_context
@handles_errors
def devices_command(ctx: click.Context, tracker: str | None, as_json: bool) -> None:
    """Device profiles (built-in and build.toml) and, with --tracker, a tracker's queue."""
    if ctx.invoked_subcommand is not None:
        return
    config = get_config(ctx)
    specs = [config.device(name) for name in known_device_names(config.devices)]
    summary = None
    if tracker:
        host, port = parse_host_port(tracker, "--tracker")
        summary = tracker_summary(host, port)
    if as_json:
        data = {"devices": [s.to_dict() for s in specs], "tracker": summary.to_dict() if summary else None}
        out.print_json(json.dumps(data))
        return
    rows = [(spec.name, _target_text(spec.target), spec.connection.to_url(),
             ("EMULATED " if spec.emulated else "") + spec.description) for spec in specs]
    if not out.is_terminal:  # a pipe: one line per device, nothing cut, easy to grep
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        for name, target, url, notes in rows:
            click.echo(f"{name:<{widths[0]}}  {url:<{widths[2]}}  {target:<{widths[1]}}  {notes}".rstrip())
    else:
        table = Table(title="device profiles", title_justify="left")
        table.add_column("name", no_wrap=True, min_width=max(len(r[0]) for r in rows))
        table.add_column("reached through", overflow="fold")
        table.add_column("target / notes", overflow="fold")
        for name, target, url, notes in rows:
            notes = notes.replace("EMULATED ", "[bold yellow]EMULATED[/] ", 1)
            table.add_row(name, url, f"{target}\n[dim]{notes}[/]" if notes else target)
        out.print(table)
    if summary is not None:
        keys = Table(title=f"tracker {summary.address}", title_justify="left")
        for col in ("key", "servers", "free", "pending"):
            keys.add_column(col, justify="right" if col != "key" else "left")
        for k in summary.keys:
            keys.add_row(k.key, str(k.servers), str(k.free), str(k.pending))
        if not summary.keys:
            keys.add_row("(no keys: no server has registered)", "", "", "")
        out.print(keys)
        for key, address in summary.servers:
            out.print(f"  server {address} under key '{key}'")


def _target_text(target: object) -> str:
    if isinstance(target, dict):
        return " ".join(str(target[k]) for k in ("kind", "mtriple", "mcpu") if target.get(k))
    return str(target)


@devices_command.command("emulate")
@click.argument("board")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the server binds.")
@click.option("--port", default=9200, show_default=True, type=click.IntRange(1, 65535))
@click.option("--tracker", default=None, metavar="HOST:PORT", help="Register with this tracker.")
@click.option("--key", default=None, help="Tracker key (default: BOARD-emulated).")
@click.option("--allow-remote-bind", is_flag=True, help="Allow --host other than loopback (unauthenticated RPC!).")
@click.pass_context
@handles_errors
def emulate_command(ctx: click.Context, board: str, host: str, port: int, tracker: str | None, key: str | None,
                    allow_remote_bind: bool) -> None:
    """Build (once) an emulated BOARD root file system and serve the stock RPC server in it until Ctrl-C."""
    with EventRenderer(console) as render:
        serve_emulated(board, get_config(ctx).cache_dir(), host, port, tracker, key,
                       allow_remote=allow_remote_bind, progress=render)


@main.command("measure")
@click.argument("model", type=click.Path(exists=False, path_type=Path))
@click.option("--device", "-d", default=None,
              help="Device name (default: the device a compile folder was built for; for an ONNX file "
                   "[project].device).")
@click.option("--tuned", is_flag=True, help="For an ONNX file: tune with MetaSchedule first ([compile].trials, "
                                            "or 32 per task).")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="For an ONNX file: folder for the artifact and measure.json "
                   "(default: <output_dir>/measure/<model>-<device>).")
@click.option("--repeat", type=click.IntRange(min=3), default=None, help="Timings to take ([measure].repeat).")
@click.option("--number", type=click.IntRange(min=1), default=None, help="Runs per timing ([measure].number).")
@json_option
@click.pass_context
@handles_errors
def measure_command(ctx: click.Context, model: Path, device: str | None, tuned: bool, output: Path | None,
                    repeat: int | None, number: int | None, as_json: bool) -> None:
    """Time MODEL on its device after checking it against onnxruntime there; write measure.json.

    MODEL is a compile output folder (measured as built; measure.json goes into it) or an ONNX file
    (compiled first)."""
    config = get_config(ctx).with_section("measure", repeat=repeat, number=number)
    spec = config.device(device) if device or not model.is_dir() else None  # a folder knows its device
    with EventRenderer(console) as render:
        report = measure_model(model, spec, config, tuned=tuned, out_dir=output, progress=render)
    if as_json:
        print_json(report.to_dict())
        return
    m = report.measurement
    spec_name = m.device
    title = f"{model} on {spec_name}"
    if m.emulated:
        title += " [bold yellow](EMULATED: not the board's latency)[/]"
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_row("median", f"{m.median_ms:.4f} ms")
    table.add_row("p90", f"{m.p90_ms:.4f} ms")
    table.add_row("std / CV", f"{m.std_ms:.4f} ms / {m.cv:.1%} (robust CV {m.robust_cv:.1%})")
    warm_up = f"{m.warmup} warm-up runs (at least {WARMUP_MIN_MS} ms)" if m.warmup else "no warm-up"
    table.add_row("protocol", f"{warm_up}, then {m.repeat} timings x mean of {m.number} runs "
                  f"({m.attempts} attempt(s))")
    table.add_row("parity", f"max abs err {report.parity.max_abs_err:.3g} vs onnxruntime "
                  f"({report.parity.samples} inputs) on {report.parity.where}")
    table.add_row("tuning", f"{report.trials_per_task} trials per task" if report.tuned else "none (untuned)")
    table.add_row("json", str(report.json_path))
    out.print(table)
    if m.noisy:
        console.print(f"[bold yellow]warning[/]: this measurement stayed NOISY ({m.noise_metric} "
                      f"{m.spread():.1%} > {m.max_cv:.0%} after {m.attempts} attempts); the host or device is busy.")


@main.group("lut")
def lut_group() -> None:
    """The latency table: per-block latencies measured on a device."""


@lut_group.command("build")
@click.option("--device", "-d", default=None, help="Device name (default: [project].device).")
@click.option("--space", "space_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Project file whose [search.space] and [data] define the blocks (default: --config's).")
@click.option("--sessions", type=click.IntRange(min=1), default=None,
              help="Parallel sessions (default: servers under the tracker key; 1 otherwise).")
@click.option("--trials", type=click.IntRange(min=0), default=None,
              help="Tune each block with MetaSchedule at this many trials per task before timing it, in the "
                   "device's tuning database that the final compile reuses (default: [search] table_trials; "
                   "0: default schedules). Tuned and untuned entries are kept apart.")
@json_option
@click.pass_context
@handles_errors
def lut_build_command(ctx: click.Context, device: str | None, space_path: Path | None, sessions: int | None,
                      trials: int | None, as_json: bool) -> None:
    """Measure every block of the search space on the device (resumes where a previous build stopped)."""
    config = get_config(ctx)
    if trials is not None:
        config = config.with_section("search", table_trials=trials)
    spec = config.device(device)
    space_config = load_config(space_path) if space_path else None
    with EventRenderer(console) as render:
        report = build_project_table(config, spec, space_config, sessions=sessions, progress=render)
    if as_json:
        print_json(report.to_dict())
        return
    label = " [bold yellow](EMULATED)[/]" if report.emulated else ""
    out.print(f"{spec.name}{label}: {report.blocks} blocks, {report.already_present} already in the table, "
              f"{report.measured} measured with {report.sessions} session(s) in {report.wall_s:.1f} s "
              f"({report.retried} retried); table {report.table_path}")
    if report.tuned_trials:
        out.print(f"tuned at {report.tuned_trials} trials per task: {report.trials_run} trials spent, "
                  f"{report.tasks_tuned} tasks tuned, {report.tasks_reused} already tuned")
    if report.noisy:
        console.print(f"[bold yellow]warning[/]: {len(report.noisy)} block(s) stayed NOISY and are flagged in the "
                      "table (`nasc lut show` marks them); rebuild them on a quieter device to clear the flag.")


@lut_group.command("fit")
@click.option("--device", "-d", default=None, help="Device name (default: [project].device).")
@click.option("--archs", type=click.IntRange(min=3), default=30, show_default=True,
              help="Random architectures of the space to measure end to end.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--trials", type=click.IntRange(min=0), default=None,
              help="The table to fit: tuned at this many trials per task, its networks compiled with its records "
                   "as the final compile ships them (default: [search] table_trials; 0: untuned).")
@click.option("--space", "space_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Project file whose [search.space] and [data] define the space (default: --config's).")
@json_option
@click.pass_context
@handles_errors
def lut_fit_command(ctx: click.Context, device: str | None, archs: int, seed: int, trials: int | None,
                    space_path: Path | None, as_json: bool) -> None:
    """Measure random whole networks, fit the predictor's correction line, report its held-out error."""
    config = get_config(ctx)
    spec = config.device(device)
    space_config = load_config(space_path) if space_path else None
    with EventRenderer(console) as render:
        report = fit_predictor(config, spec, archs, seed=seed, trials=trials, space_config=space_config,
                               progress=render)
    if as_json:
        print_json(report.to_dict())
        return
    fit = report.fit
    label = " [bold yellow](EMULATED)[/]" if report.emulated else ""
    out.print(f"{spec.name}{label}: measured = {fit.scale:.3f} x sum(blocks) + {fit.overhead_ms:.4f} ms "
              f"({fit.samples} networks)")
    out.print(f"held-out error: MAPE {fit.mape:.1%}, within +-5% {fit.within_5pct:.0%}, "
              f"within +-10% {fit.within_10pct:.0%} (plain sum: MAPE {report.raw_sum['mape']:.1%})")


@lut_group.command("show")
@click.option("--device", "-d", default=None, help="Only this device's current entries.")
@click.option("--trials", type=click.IntRange(min=0), default=None,
              help="With --device: the entries tuned at this many trials per task (default: [search] "
                   "table_trials; 0: untuned).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@handles_errors
def lut_show_command(ctx: click.Context, device: str | None, trials: int | None, as_json: bool) -> None:
    """Print the latency table (all devices, or one device's entries for its current target and TVM)."""
    config = get_config(ctx)
    spec = config.device(device) if device else None
    current = table_toolchain(config.table_trials() if trials is None else trials,
                              spec.threads if spec is not None else 0)
    with LatencyTable.in_cache(config.cache_dir(), current) as table:
        entries = table.entries(spec, current_tvm_only=spec is not None)
        path = table.path
    if as_json:
        out.print_json(json.dumps({"table": str(path), "entries": [e.to_dict() for e in entries]}))
        return
    view = Table(title=f"latency table {path} ({len(entries)} entries)", title_justify="left")
    view.add_column("block", overflow="fold")
    for col in ("device", "median ms", "p90 ms", "CV", "robust CV", "flags"):
        view.add_column(col, justify="right" if "ms" in col or "CV" in col else "left", no_wrap=col != "flags")
    for e in entries:
        m = e.measurement
        flags = []
        if m.noisy:
            flags.append("[yellow]NOISY[/]")
        if m.emulated:
            flags.append("[yellow]EMULATED[/]")
        keyed = table_trials_of(e.key.tvm_version)
        if keyed is None:
            flags.append(f"[dim]tvm {e.key.tvm_version} (stale)[/]")
        else:
            tuned_at, threads = keyed
            if tuned_at:
                flags.append(f"TUNED ({tuned_at} trials per task)")
            if threads:
                flags.append(f"{threads} threads")
        view.add_row(e.key.block, m.device, f"{m.median_ms:.4f}", f"{m.p90_ms:.4f}", f"{m.cv:.1%}",
                     f"{m.robust_cv:.1%}", " ".join(flags))
    out.print(view)

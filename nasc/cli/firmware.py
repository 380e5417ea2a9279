"""`nasc package`, `nasc verify`, `nasc flash`: bundles for firmware teams and serial deployment."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from nasc.cli import console, get_config, handles_errors, json_option, main, out, print_json
from nasc.firmware_bridge.bundle import extract_bundle, verify_bundle
from nasc.firmware_bridge.flash import flash
from nasc.pipeline.package import package


@main.command("package")
@click.option("--from", "from_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The output folder of nasc compile (compile.json, model.so, model.onnx; measure.json if "
                   "nasc measure ran on it).")
@click.option("--search", "search_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The output folder of the nasc search behind the model: its accuracy, predicted latency, "
                   "preprocessing and arch.json go into the bundle.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Bundle to write (default: ./model-<device>.tar.gz).")
@json_option
@click.pass_context
@handles_errors
def package_command(ctx: click.Context, from_dir: Path, search_dir: Path | None, output: Path | None,
                    as_json: bool) -> None:
    """Make a verified, deterministic bundle (tar.gz) from a compile output folder."""
    config = get_config(ctx)
    result = package(from_dir, output, config.package, search_dir)
    if as_json:
        print_json(result.to_dict())
        return
    manifest = result.manifest
    table = Table(title=f"bundle {result.bundle}", show_header=False, title_justify="left")
    table.add_row("sha256", result.sha256)
    table.add_row("size", f"{result.size_bytes} bytes, {len(manifest.files) + 1} files")
    table.add_row("device", f"{manifest.device.get('name', '')} ({manifest.target_triple})"
                  + (" EMULATED" if manifest.latency.emulated else ""))
    for spec in (*manifest.inputs, *manifest.outputs):
        kind = "input" if spec in manifest.inputs else "output"
        table.add_row(kind, f"{spec.name} {list(spec.shape)} {spec.dtype} {spec.layout}".rstrip())
    out.print(table)


@main.command("verify")
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--unpack", "unpack_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also unpack it into this new folder (refusing unsafe members).")
@json_option
@click.pass_context
@handles_errors
def verify_command(ctx: click.Context, bundle: Path, unpack_dir: Path | None, as_json: bool) -> None:
    """Check BUNDLE's manifest schema and every file's size and sha256 (exit 11 names each bad file)."""
    config = get_config(ctx)
    limit = int(config.package.max_member_mb * 1024 * 1024)
    report = extract_bundle(bundle, unpack_dir, limit) if unpack_dir else verify_bundle(bundle, limit)
    if as_json:
        print_json({"bundle": str(bundle), "ok": True, "unpacked_into": str(unpack_dir) if unpack_dir else None,
                    "files_checked": report.files_checked, "manifest": report.manifest.to_dict()})
        return
    where = f", unpacked into {unpack_dir}" if unpack_dir else ""
    table = Table(title=f"{bundle}: OK ({report.manifest.schema}){where}", title_justify="left")
    table.add_column("file")
    table.add_column("bytes", justify="right")
    table.add_column("sha256")
    for entry in report.manifest.files:
        table.add_row(entry.path, str(entry.size_bytes), entry.sha256[:16])
    out.print(table)


@main.command("flash")
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--port", required=True, help="Serial device of the board, for example /dev/ttyUSB0.")
@click.option("--baud", type=click.IntRange(min=1), default=None, help="Baud rate (default: [package].baud, 921600).")
@click.option("--protocol", type=click.Choice(["nasc", "ymodem"]), default=None,
              help="nasc: the board runs python -m nasc.firmware_bridge.receiver; ymodem: a bootloader (loady).")
@json_option
@click.pass_context
@handles_errors
def flash_command(ctx: click.Context, bundle: Path, port: str, baud: int | None, protocol: str | None,
                  as_json: bool) -> None:
    """Verify BUNDLE, then send it over a serial line to the board."""
    config = get_config(ctx)
    columns = (TextColumn("[bold cyan]  flash[/]"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    progress = Progress(*columns, console=console, transient=False)
    task = progress.add_task("send", total=None)

    def report(done: int, total: int) -> None:
        if not progress.live.is_started:  # the bar appears once the bundle is verified and the port is open
            progress.start()
        progress.update(task, completed=done, total=total)

    try:
        result = flash(bundle, port, baud, protocol, config.package, report)  # type: ignore[arg-type]
    finally:
        progress.stop()
    if as_json:
        print_json({**result.__dict__, "port": port})
        return
    resumed = f", resumed at byte {result.resumed_from_bytes}" if result.resumed_from_bytes else ""
    check = (f"sha256 {result.sha256[:16]} confirmed by the receiver{resumed}" if result.protocol == "nasc"
             else "YMODEM checks blocks only: run nasc verify (or sha256sum) on the board")
    out.print(f"sent {result.name}: {result.size_bytes} bytes in {result.elapsed_s:.1f} s "
              f"({result.bytes_per_s:.0f} bytes/s) over {port} ({result.protocol}); {check}; "
              f"{result.frames_resent} frames resent", soft_wrap=True)

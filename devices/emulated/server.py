"""The stock TVM RPC server run inside an emulated board's root file system (chroot + qemu-user)."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from nasc.devices.server import RpcServerProcess, check_bind_host, stock_server_command
from nasc.errors import DeviceUnreachable

from .hostcheck import check_host, install_interpreter
from .recipe import recipe_for
from .rootfs import BUILD_TIME_HINT, ProgressFn, board_dir, cached_rootfs, chroot_env, ensure_rootfs

EMULATED_BANNER = "EMULATED"
# Under qemu-user, starting Python and importing TVM took 8-20 s here (2 busy cores): allow time to come up.
START_TIMEOUT_S = 180.0
DEFAULT_PORT = 9200


def server_command(
    rootfs: Path,
    host: str,
    port: int,
    port_end: int | None = None,
    tracker: str | None = None,
    key: str | None = None,
) -> list[str]:
    """``chroot ROOTFS python3 -m tvm.exec.rpc_server --host HOST ...``: the stock server, nothing added."""
    return ["chroot", str(rootfs), *stock_server_command(host, port, port_end, tracker=tracker, key=key,
                                                         python="python3")]


def emulated_server(
    board: str,
    cache_dir: Path,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    port_end: int | None = None,
    *,
    tracker: str | None = None,
    key: str | None = None,
    allow_remote: bool = False,
    progress: ProgressFn | None = None,
    log_path: Path | None = None,
) -> RpcServerProcess:
    """An unstarted server process for `board` (its root file system built first if needed).

    Start it with ``with server:`` or ``server.start(); server.wait_until_listening(START_TIMEOUT_S)``.
    """
    check_bind_host(host, allow_remote)
    recipe = recipe_for(board)
    if progress is None and cached_rootfs(board, cache_dir) is None:
        Console(stderr=True, highlight=False).print(
            f"building the emulated {recipe.board} root file system once ({BUILD_TIME_HINT}); "
            f"log: {board_dir(board, cache_dir) / 'build.log'}"
        )
    rootfs = ensure_rootfs(board, cache_dir, progress)
    handler = check_host(recipe.qemu_arch, f"running the emulated {recipe.board} server")
    install_interpreter(rootfs, handler)
    command = server_command(rootfs, host, port, port_end, tracker, key)
    return _EmulatedServerProcess(command, host, port, name=f"emulated {recipe.board} RPC server",
                                  log_path=log_path, env=chroot_env())


class _EmulatedServerProcess(RpcServerProcess):
    """RpcServerProcess with a start-up allowance fit for qemu-user."""

    def __enter__(self) -> RpcServerProcess:
        self.start()
        try:
            self.wait_until_listening(START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        return self


@contextlib.contextmanager
def rich_progress(console: Console, title: str) -> Iterator[ProgressFn]:
    """A ProgressFn drawing a rich progress bar (step bar + the latest message) on `console`."""
    columns = (SpinnerColumn(), TextColumn("[bold]{task.fields[title]}[/]"), BarColumn(bar_width=20),
               TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("", total=1, title=title)

        def update(message: str, done: int, total: int) -> None:
            bar.update(task, description=message[:70], completed=done, total=total)

        yield update


def serve_emulated(
    board: str,
    cache_dir: Path,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    tracker: str | None = None,
    key: str | None = None,
    *,
    port_end: int | None = None,
    allow_remote: bool = False,
    console: Console | None = None,
) -> None:
    """Build the board's root file system if needed, serve the stock RPC server inside it until Ctrl-C.

    Blocks; returns after Ctrl-C (the server is stopped) and raises DeviceUnreachable if the server dies.
    """
    console = console or Console(stderr=True, highlight=False)
    recipe = recipe_for(board)
    key = key or (f"{recipe.board}-emulated" if tracker else None)
    port_end = port_end if port_end is not None else port + 10
    if cached_rootfs(board, cache_dir) is None:
        console.print(f"building the emulated {recipe.board} root file system once ({BUILD_TIME_HINT}) "
                      f"under {board_dir(board, cache_dir)}")
    with _signals_interrupt():
        server: RpcServerProcess | None = None
        try:
            with rich_progress(console, f"emulated {recipe.board}") as progress:
                server = emulated_server(board, cache_dir, host, port, port_end, tracker=tracker, key=key,
                                         allow_remote=allow_remote, progress=progress,
                                         log_path=board_dir(board, cache_dir) / f"server-{port}.log")
            with console.status(f"starting the RPC server under qemu-user ({recipe.machine})..."):
                server.start()
                server.wait_until_listening(START_TIMEOUT_S)
            where = f"registered with tracker {tracker} under key '{key}'" if tracker else "no tracker"
            console.print(
                f"[bold yellow]{EMULATED_BANNER}[/] {recipe.board} ({recipe.machine} under qemu-user, Debian "
                f"{recipe.suite}): TVM RPC server on {server.address}, {where}.\n"
                "Timings from it are emulation timings, not the board's latency. "
                f"Log: {server.log_path}. Press Ctrl-C to stop."
            )
            while server.alive():
                time.sleep(0.5)
            raise DeviceUnreachable(
                f"the emulated {recipe.board} RPC server on {server.address} exited "
                f"(code {server.proc.returncode if server.proc else '?'}); its log:\n{server.log_tail()}"
            )
        except KeyboardInterrupt:
            what = f"RPC server on {server.address}" if server is not None else "build"
            console.print(f"stopping the emulated {recipe.board} {what}")
        finally:
            if server is not None:
                server.stop()


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into KeyboardInterrupt (and SIGINT back on if it was ignored), so `finally`
    stops the server: it runs in its own process group and would otherwise outlive nasc."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    raised = []

    def interrupt(signum: int, frame: object) -> None:
        if not raised:  # once: a second signal must not break the cleanup the first one started
            raised.append(signum)
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

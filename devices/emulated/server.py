"""The stock TVM RPC server run inside an emulated board's root file system (chroot + qemu-user)."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from nasc.devices.server import RpcServerProcess, check_bind_host, stock_server_command
from nasc.errors import DeviceUnreachable
from nasc.events import Progress, ProgressEvent, ignore_progress

from .hostcheck import check_host, install_interpreter
from .recipe import recipe_for
from .rootfs import BUILD_TIME_HINT, ProgressFn, board_dir, cached_rootfs, chroot_env, ensure_rootfs

EMULATED_BANNER = "EMULATED"
# Under qemu-user, starting Python and importing TVM took 8-20 s here (2 busy cores): allow time to come up.
START_TIMEOUT_S = 180.0
DEFAULT_PORT = 9200
log = logging.getLogger(__name__)


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
        log.warning("building the emulated %s root file system once (%s); log: %s", recipe.board, BUILD_TIME_HINT,
                    board_dir(board, cache_dir) / "build.log")
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
    progress: Progress = ignore_progress,
) -> None:
    """Build the board's root file system if needed, serve the stock RPC server inside it until Ctrl-C.

    Blocks; returns after Ctrl-C (the server is stopped) and raises DeviceUnreachable if the server dies.
    What it does is reported as progress events (stage "emulate").
    """
    recipe = recipe_for(board)
    key = key or (f"{recipe.board}-emulated" if tracker else None)
    port_end = port_end if port_end is not None else port + 10
    if cached_rootfs(board, cache_dir) is None:
        progress(ProgressEvent.note("emulate", f"building the emulated {recipe.board} root file system once "
                                               f"({BUILD_TIME_HINT}) under {board_dir(board, cache_dir)}"))

    def build_step(message: str, done: int, total: int) -> None:
        progress(ProgressEvent("emulate", done, total, label=f"building {recipe.board}: {message[:50]}"))

    with _signals_interrupt():
        server: RpcServerProcess | None = None
        try:
            server = emulated_server(board, cache_dir, host, port, port_end, tracker=tracker, key=key,
                                     allow_remote=allow_remote, progress=build_step,
                                     log_path=board_dir(board, cache_dir) / f"server-{port}.log")
            progress(ProgressEvent.note("emulate", f"starting the RPC server under qemu-user ({recipe.machine})..."))
            server.start()
            server.wait_until_listening(START_TIMEOUT_S)
            where = f"registered with tracker {tracker} under key '{key}'" if tracker else "no tracker"
            progress(ProgressEvent.note(
                "emulate",
                f"{EMULATED_BANNER} {recipe.board} ({recipe.machine} under qemu-user, Debian "
                f"{recipe.suite}): TVM RPC server on {server.address}, {where}.\n"
                "Timings from it are emulation timings, not the board's latency. "
                f"Log: {server.log_path}. Press Ctrl-C to stop.",
            ))
            while server.alive():
                time.sleep(0.5)
            raise DeviceUnreachable(
                f"the emulated {recipe.board} RPC server on {server.address} exited "
                f"(code {server.proc.returncode if server.proc else '?'}); its log:\n{server.log_tail()}"
            )
        except KeyboardInterrupt:
            what = f"RPC server on {server.address}" if server is not None else "build"
            progress(ProgressEvent.note("emulate", f"stopping the emulated {recipe.board} {what}"))
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

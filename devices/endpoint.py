"""Where a device's code runs for tuning: an ``Endpoint`` (a tracker key with its servers, or one server).

The compiler's remote tuning measures candidates at an endpoint; this module finds it (and, for an
emulated board, starts a tracker on 127.0.0.1 with the board's stock server under a key, stopping
both on exit), so the compiler never starts a server itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nasc.errors import CompileError, DeviceUnreachable

from .emulated import emulated_server
from .emulated.server import START_TIMEOUT_S
from .rpc import open_session
from .server import RpcServerProcess, exit_on_sigterm, free_port, tracker_command
from .settings import MeasureSettings
from .spec import DeviceSpec
from .tracker import tracker_summary, wait_for_servers

# How long to wait, before tuning starts, for a server to be registered under the key.
SERVER_WAIT_S = 30.0
EMULATED_SERVER_WAIT_S = 240.0


@dataclass(frozen=True)
class Endpoint:
    """Where candidates are measured: a tracker key with `servers` servers, or one server (kind 'rpc')."""

    kind: str  # "tracker" or "rpc"
    host: str
    port: int
    key: str
    servers: int
    emulated: bool

    @property
    def label(self) -> str:
        """For messages and the tuning summary (EMULATED where it is)."""
        if self.kind == "rpc":
            where = f"server {self.host}:{self.port}"
        else:
            where = f"tracker {self.host}:{self.port} key '{self.key}' ({self.servers} server(s))"
        return where + (" EMULATED" if self.emulated else "")


def _check_tracker(device: DeviceSpec, wait_s: float) -> Endpoint:
    conn = device.connection
    try:
        summary = tracker_summary(conn.host, conn.port)
        if summary.key(conn.key).servers == 0:
            summary = wait_for_servers(conn.host, conn.port, conn.key, 1, timeout_s=wait_s)
    except DeviceUnreachable as exc:
        raise DeviceUnreachable(f"cannot tune for device '{device.name}': {exc}") from None
    return Endpoint("tracker", conn.host, conn.port, conn.key, summary.key(conn.key).servers, device.emulated)


def _check_server(device: DeviceSpec, cache_dir: Path) -> Endpoint:
    """One real session to the rpc://HOST:PORT server (so a wrong address fails before tuning starts)."""
    try:
        with open_session(device, cache_dir, MeasureSettings(retries=1)):
            pass
    except DeviceUnreachable as exc:
        raise DeviceUnreachable(f"cannot tune for device '{device.name}': {exc}") from None
    conn = device.connection
    return Endpoint("rpc", conn.host, conn.port, device.name, 1, device.emulated)


@contextlib.contextmanager
def _emulated_tracker(device: DeviceSpec, cache_dir: Path) -> Iterator[Endpoint]:
    """A tracker on 127.0.0.1 with the emulated board's stock server under a key; both stopped on exit."""
    host = "127.0.0.1"
    key = f"{device.name}-tuning"
    board = str(device.extra.get("board", "rpi4"))
    tracker_port = free_port(host)
    with exit_on_sigterm(), RpcServerProcess(
        tracker_command(host, tracker_port, tracker_port + 10), host, tracker_port, name="RPC tracker (tuning)"
    ) as tracker:
        port = free_port(host)
        server = emulated_server(board, cache_dir, host, port, port + 10,
                                 tracker=f"{host}:{tracker.port}", key=key)
        server.start()
        try:
            server.wait_until_listening(START_TIMEOUT_S)
            wait_for_servers(host, tracker.port, key, 1, timeout_s=EMULATED_SERVER_WAIT_S)
            yield Endpoint("tracker", host, tracker.port, key, 1, emulated=True)
        finally:
            server.stop()


@contextlib.contextmanager
def device_endpoint(device: DeviceSpec, cache_dir: Path, *, wait_s: float = SERVER_WAIT_S) -> Iterator[Endpoint]:
    """Where candidates for `device` are measured (a tracker and server started here for an emulated board)."""
    kind = device.connection.kind
    if kind == "tracker":
        yield _check_tracker(device, wait_s)
    elif kind == "emulated":
        with _emulated_tracker(device, cache_dir) as endpoint:
            yield endpoint
    elif kind == "rpc":
        yield _check_server(device, cache_dir)
    else:
        raise CompileError(
            f"device '{device.name}' has connection '{kind}' but a cross compiler ({device.cross_compiler}): "
            "its code cannot run on this host, so there is nothing to measure candidates on; give it a "
            "'tracker://HOST:PORT/KEY' connection or compile with --trials 0"
        )

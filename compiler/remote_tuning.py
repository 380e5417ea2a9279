"""MetaSchedule candidates measured on the device itself, over TVM RPC.

- ``tracker`` devices (a board farm): MetaSchedule's stock ``RPCRunner`` asks the tracker for a
  server under the device's key for every candidate.
- ``emulated`` devices: nasc starts a tracker on 127.0.0.1 and the emulated board's stock server
  registered under a key, then takes the same RPCRunner path. Timings are emulation timings.
- ``rpc`` devices (one server, no tracker): the same RPCRunner with its supported ``f_create_session``
  hook set to connect to that server directly (one candidate at a time: a server serves one session).

Candidates are built here and exported as a shared library linked by the device's cross compiler
(TVM's default export is a .tar the device would have to link with its own g++).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasc.config import CompileSettings
from nasc.devices.spec import DeviceSpec
from nasc.errors import CompileError, DeviceUnreachable

from .tune import Measurement, TuningReporter, TuningSummary, tune_module

ARTIFACT_NAME = "tvm_tmp_mod.so"
# A candidate's whole session (connect, upload, load, random fill, timing) must end within this;
# under qemu-user one took seconds here, on a busy 2-core host it can take far longer.
SESSION_TIMEOUT_S = 300.0
# How long a candidate waits in the tracker's queue for a free server before it counts as failed.
QUEUE_TIMEOUT_S = 600.0
# How long to wait, before tuning starts, for a server to be registered under the key.
SERVER_WAIT_S = 30.0
EMULATED_SERVER_WAIT_S = 240.0


@dataclass(frozen=True)
class CrossExport:
    """MetaSchedule export function for a device: a .so linked with the device's cross compiler.

    Runs in the builder's worker processes (pickled by reference, so it must stay importable).
    """

    device: DeviceSpec

    def __call__(self, mod: Any) -> str:
        """Export one built candidate; returns the artifact path (alone in a fresh folder)."""
        from .target import library_linker

        linker = library_linker(self.device)
        path = os.path.join(tempfile.mkdtemp(prefix="nasc-ms-"), ARTIFACT_NAME)
        if linker is None:
            mod.export_library(path)
        else:
            mod.export_library(path, fcompile=linker)
        return path


@dataclass(frozen=True)
class TrackerSessionOpener:
    """MetaSchedule ``f_create_session``: a tracker request that gives up after `queue_timeout_s`.

    The stock one waits in the tracker's queue forever when every server is gone.
    """

    queue_timeout_s: float = QUEUE_TIMEOUT_S

    def __call__(self, rpc_config: Any) -> Any:
        """Open a session to a free server under the config's key."""
        from tvm import rpc

        from nasc.devices.tracker import request_server

        host, port, matchkey = request_server(
            rpc_config.tracker_host, int(rpc_config.tracker_port), rpc_config.tracker_key, self.queue_timeout_s
        )
        return rpc.connect(host, port, key=matchkey, session_timeout=rpc_config.session_timeout_sec)


@dataclass(frozen=True)
class ServerSessionOpener:
    """MetaSchedule ``f_create_session`` for a single server (rpc://HOST:PORT): connects to it directly.

    RPCConfig insists on tracker fields; for this opener they only carry the session timeout.
    """

    host: str
    port: int

    def __call__(self, rpc_config: Any) -> Any:
        """Open a session to the server (waits while it serves another client)."""
        from tvm import rpc

        return rpc.connect(self.host, self.port, session_timeout=rpc_config.session_timeout_sec)


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
    from nasc.devices.tracker import tracker_summary, wait_for_servers

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
    from nasc.devices.rpc import open_session
    from nasc.devices.settings import MeasureSettings

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
    from nasc.devices.emulated import emulated_server
    from nasc.devices.emulated.server import START_TIMEOUT_S
    from nasc.devices.server import RpcServerProcess, exit_on_sigterm, free_port, tracker_command
    from nasc.devices.tracker import wait_for_servers

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


def session_opener(endpoint: Endpoint, queue_timeout_s: float = QUEUE_TIMEOUT_S) -> Any:
    """The RPCRunner ``f_create_session`` for the endpoint (picklable: it runs in the runner's workers)."""
    if endpoint.kind == "rpc":
        return ServerSessionOpener(endpoint.host, endpoint.port)
    return TrackerSessionOpener(queue_timeout_s)


def rpc_runner(endpoint: Endpoint, *, session_timeout_s: float = SESSION_TIMEOUT_S,
               queue_timeout_s: float = QUEUE_TIMEOUT_S) -> Any:
    """MetaSchedule's stock RPCRunner for the endpoint (one worker per server that can take a session)."""
    from tvm.s_tir.meta_schedule.runner import EvaluatorConfig, RPCConfig, RPCRunner

    config = RPCConfig(tracker_host=endpoint.host, tracker_port=endpoint.port, tracker_key=endpoint.key,
                       session_timeout_sec=int(session_timeout_s))
    return RPCRunner(rpc_config=config, evaluator_config=EvaluatorConfig(number=3, repeat=1, min_repeat_ms=100),
                     f_create_session=session_opener(endpoint, queue_timeout_s), max_workers=max(1, endpoint.servers))


@contextlib.contextmanager
def device_measurement(device: DeviceSpec, cache_dir: Path) -> Iterator[Measurement]:
    """Candidates cross-built here and timed on `device` over RPC (servers nasc started are stopped on exit)."""
    with device_endpoint(device, cache_dir) as endpoint:
        runner = rpc_runner(endpoint)
        try:
            yield Measurement(runner, CrossExport(device), f"{device.name} via {endpoint.label}", endpoint.emulated)
        finally:
            with contextlib.suppress(Exception):
                runner.pool.shutdown()


def tune_on_device(
    mod: Any,
    target: Any,
    device: DeviceSpec,
    database_dir: Path,
    settings: CompileSettings,
    cache_dir: Path,
    reporter: TuningReporter | None = None,
) -> TuningSummary:
    """tune_module with candidates measured on `device` over RPC (servers start only if a task needs trials).

    The summary is marked emulated for an emulated device even when every record was reused.
    """
    from .target import library_linker

    library_linker(device)  # a missing cross compiler fails before any server starts
    summary = tune_module(
        mod, target, database_dir, settings.trials,
        trials_per_iteration=settings.trials_per_iteration, seed=settings.seed, reporter=reporter,
        measurement=functools.partial(device_measurement, device, cache_dir),
    )
    return dataclasses.replace(summary, emulated=summary.emulated or device.emulated)

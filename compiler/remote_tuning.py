"""MetaSchedule candidates measured on the device itself, over TVM RPC.

- ``tracker`` devices (a board farm): MetaSchedule's stock ``RPCRunner`` asks the tracker for a
  server under the device's key for every candidate.
- ``emulated`` devices: devices/ starts a tracker on 127.0.0.1 and the emulated board's stock server
  registered under a key, then the same RPCRunner path is taken. Timings are emulation timings.
- ``rpc`` devices (one server, no tracker): the same RPCRunner with its supported ``f_create_session``
  hook set to connect to that server directly (one candidate at a time: a server serves one session).

Where candidates run (an ``Endpoint``) comes from devices/ through an endpoint source handed in by
the caller: the compiler never starts a server itself. Candidates are built here and exported as a
shared library linked by the device's cross compiler (TVM's default export is a .tar the device
would have to link with its own g++).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasc.devices.endpoint import Endpoint
from nasc.devices.spec import DeviceSpec
from nasc.devices.tracker import request_server
from nasc.events import Progress

from .settings import CompileSettings
from .target import library_linker
from .tune import Measurement, TuningSummary, tune_module

ARTIFACT_NAME = "tvm_tmp_mod.so"
# A candidate's whole session (connect, upload, load, random fill, timing) must end within this;
# under qemu-user one took seconds here, on a busy 2-core host it can take far longer.
SESSION_TIMEOUT_S = 300.0
# How long a candidate waits in the tracker's queue for a free server before it counts as failed.
QUEUE_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class CrossExport:
    """MetaSchedule export function for a device: a .so linked with the device's cross compiler.

    Runs in the builder's worker processes (pickled by reference, so it must stay importable).
    """

    device: DeviceSpec

    def __call__(self, mod: Any) -> str:
        """Export one built candidate; returns the artifact path (alone in a fresh folder)."""
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


EndpointSource = Callable[[], AbstractContextManager[Endpoint]]  # devices' device_endpoint, bound to a device


@contextlib.contextmanager
def device_measurement(device: DeviceSpec, endpoint_source: EndpointSource) -> Iterator[Measurement]:
    """Candidates cross-built here and timed on `device` over RPC at the endpoint the source opens
    (the source, from devices/, starts and stops any server it needs: the compiler starts none)."""
    with endpoint_source() as endpoint:
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
    endpoint_source: EndpointSource,
    database_dir: Path,
    settings: CompileSettings,
    progress: Progress | None = None,
) -> TuningSummary:
    """tune_module with candidates measured on `device` over RPC (the endpoint opens only if a task needs trials).

    The summary is marked emulated for an emulated device even when every record was reused.
    """
    library_linker(device)  # a missing cross compiler fails before any server starts
    summary = tune_module(
        mod, target, database_dir, settings.trials,
        trials_per_iteration=settings.trials_per_iteration, seed=settings.seed, progress=progress,
        measurement=functools.partial(device_measurement, device, endpoint_source),
    )
    return dataclasses.replace(summary, emulated=summary.emulated or device.emulated)

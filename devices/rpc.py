"""Sessions to a device over TVM RPC: local (nasc starts a server), emulated, rpc://host:port, tracker.

``open_session(device, cache_dir)`` is the one-session API the compiler and search use;
``SessionSource`` opens many (one per parallel worker) and ``Worker.run`` retries a dropped
session with backoff on a fresh one (another server of the key where the tracker has one).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import psutil

from nasc.errors import DeviceUnreachable, MeasurementError, NascError

from .emulated.server import START_TIMEOUT_S, emulated_server
from .server import RpcServerProcess, check_bind_host, exit_on_sigterm, free_port, stock_server_command
from .settings import MeasureSettings
from .spec import DeviceSpec
from .tracker import request_server, server_hint, tracker_summary

T = TypeVar("T")


class DeviceSession:
    """One open RPC session: ``.remote`` (tvm.rpc.RPCSession), ``.dev``, ``.address``, ``.load_library``."""

    def __init__(self, remote: Any, address: str, device: DeviceSpec) -> None:
        self.remote = remote
        self.address = address
        self.device = device
        self._loaded: dict[str, Any] = {}

    @property
    def dev(self) -> Any:
        """The remote CPU device (``remote.cpu(0)``)."""
        return self.remote.cpu(0)

    def load_library(self, path: str | Path) -> Any:
        """Upload a compiled library and load it on the device; returns the remote runtime Module.

        A library already loaded in this session is returned as is: re-uploading over a file the
        device has mapped would crash the session.
        """
        path = Path(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        name = f"{digest}-{path.name}"
        if name not in self._loaded:
            self.remote.upload(str(path), target=name)
            self._loaded[name] = self.remote.load_module(name)
        return self._loaded[name]

    def runtime_threads(self) -> int:
        """The TVM runtime threads the device's server runs networks with."""
        return int(self.remote.get_function("runtime.NumThreads")())

    def check_threads(self) -> int:
        """The server's runtime threads; a MeasurementError when the device names another number (its
        timings would not be the ones the latency table and tuning are keyed by)."""
        threads = self.runtime_threads()
        wanted = self.device.threads
        if wanted and threads != wanted:
            raise MeasurementError(
                f"the server at {self.address} runs {threads} runtime thread(s) but device '{self.device.name}' "
                f"sets threads = {wanted}; start the server with TVM_NUM_THREADS={wanted}, or set "
                f"[devices.{self.device.name}] threads = {threads} (0: take the server's setting)")
        return threads

    def close(self) -> None:
        """Drop the session (the server frees itself for the next client)."""
        self._loaded.clear()
        self.remote = None


def shutdown_connections(host: str, port: int) -> int:
    """Shut down this process's TCP connections to host:port (unblocks a call stuck on a hung server)."""
    try:
        ip = socket.gethostbyname(host)
    except OSError:
        ip = host
    count = 0
    for conn in psutil.Process().net_connections(kind="tcp"):
        if conn.raddr and conn.raddr.ip == ip and conn.raddr.port == port and conn.fd != -1:
            with contextlib.suppress(OSError):
                dup = socket.socket(fileno=os.dup(conn.fd))
                try:
                    dup.shutdown(socket.SHUT_RDWR)
                    count += 1
                finally:
                    dup.close()
    return count


class Watchdog:
    """Aborts one attempt that outlives `timeout_s`: shuts down the socket to the server it talks to.

    The server's own ``session_timeout`` ends a hung *session*; this also covers a server that hangs
    as a whole (stopped, frozen, network gone) where nothing on the device side can act.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.target: tuple[str, int] | None = None
        self.fired = False
        self._timer = threading.Timer(timeout_s, self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        if self.target is not None:
            shutdown_connections(*self.target)

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


def _connect(host: str, port: int, key: str, settings: MeasureSettings, watchdog: Watchdog | None = None) -> Any:
    from tvm import rpc

    if watchdog is not None:
        watchdog.target = (host, port)
    return rpc.connect(host, port, key=key, session_timeout=settings.session_timeout_s)


class SessionSource:
    """Opens sessions to one device; owns (and always stops) the servers it starts itself.

    - ``local``: starts `servers` stock servers on ``bind_host`` (127.0.0.1) on free ports.
    - ``emulated``: starts the stock server inside the emulated root file system.
    - ``rpc``: a running server at host:port (one session at a time).
    - ``tracker``: each session is a fresh tracker request under the key, so parallel workers land on
      different servers and a retry after a dead server lands on a live one.
    """

    def __init__(
        self,
        device: DeviceSpec,
        cache_dir: Path,
        settings: MeasureSettings | None = None,
        *,
        servers: int = 1,
        bind_host: str = "127.0.0.1",
        allow_remote_bind: bool = False,
    ) -> None:
        self.device = device
        self.cache_dir = Path(cache_dir)
        self.settings = settings or MeasureSettings()
        self.servers = max(1, servers)
        self.bind_host = bind_host
        self.allow_remote_bind = allow_remote_bind
        self._owned: list[RpcServerProcess] = []
        self._lock = threading.Lock()
        self._sigterm = exit_on_sigterm()

    # -- owned servers (local / emulated) ---------------------------------------------------------
    def _start_server(self) -> RpcServerProcess:
        port = free_port(self.bind_host)
        if self.device.connection.kind == "local":
            threads = self.device.threads
            proc = RpcServerProcess(stock_server_command(self.bind_host, port, port + 10), self.bind_host, port,
                                    name="local RPC server",
                                    env={**os.environ, "TVM_NUM_THREADS": str(threads)} if threads else None)
            timeout_s = 60.0
        else:
            board = str(self.device.extra.get("board", "rpi4"))
            proc = emulated_server(board, self.cache_dir, self.bind_host, port, port + 1,
                                   allow_remote=self.allow_remote_bind)
            timeout_s = START_TIMEOUT_S
        proc.start()
        try:
            proc.wait_until_listening(timeout_s=max(timeout_s, self.settings.connect_timeout_s))
        except BaseException:
            proc.stop()
            raise
        return proc

    def _owned_server(self, slot: int) -> RpcServerProcess:
        with self._lock:
            index = slot % len(self._owned)
            proc = self._owned[index]
            if not proc.alive():  # died (killed, crashed): replace it
                proc.stop()
                proc = self._start_server()
                self._owned[index] = proc
            return proc

    @property
    def host_shared(self) -> bool:
        """True when the device's server runs on this host (compiling would disturb its timings)."""
        return self.device.connection.kind in ("local", "emulated")

    def __enter__(self) -> SessionSource:
        kind = self.device.connection.kind
        self._sigterm.__enter__()
        if kind in ("local", "emulated"):
            check_bind_host(self.bind_host, self.allow_remote_bind)
            try:
                for _ in range(self.servers):
                    self._owned.append(self._start_server())
            except BaseException:
                self.close()
                raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop every server this source started."""
        for proc in self._owned:
            proc.stop()
        self._owned.clear()
        self._sigterm.__exit__(None, None, None)
        self._sigterm = exit_on_sigterm()

    # -- sessions ----------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        """Where the device is, for messages."""
        conn = self.device.connection
        if conn.kind in ("local", "emulated") and self._owned:
            where = ", ".join(p.address for p in self._owned)
            return f"{conn.kind} server {where}"
        return conn.address

    def start_hint(self) -> str:
        """The command that starts a server for this device."""
        conn = self.device.connection
        if conn.kind == "tracker":
            return server_hint(f"{conn.host}:{conn.port}", conn.key)
        if conn.kind == "rpc":
            return f"python -m tvm.exec.rpc_server --host 127.0.0.1 --port {conn.port}"
        if conn.kind == "emulated":
            return "nasc devices emulate rpi4"
        return "nasc starts it itself; check that `python -m tvm.exec.rpc_server --help` works"

    def parallelism(self) -> int:
        """How many sessions can be open at once (servers under the key for a tracker)."""
        conn = self.device.connection
        if conn.kind in ("local", "emulated"):
            return max(1, len(self._owned))
        if conn.kind == "tracker":
            return max(1, tracker_summary(conn.host, conn.port).key(conn.key).servers)
        return 1

    def connect(self, slot: int = 0, watchdog: Watchdog | None = None) -> DeviceSession:
        """Open one new session (no retry here; see :class:`Worker`)."""
        conn = self.device.connection
        try:
            if conn.kind in ("local", "emulated"):
                proc = self._owned_server(slot)
                remote = _connect(proc.host, proc.port, "", self.settings, watchdog)
                return DeviceSession(remote, f"{self.device.name} ({conn.kind} server {proc.address})", self.device)
            if conn.kind == "rpc":
                remote = _connect(conn.host, conn.port, "", self.settings, watchdog)
                return DeviceSession(remote, f"{self.device.name} ({conn.host}:{conn.port})", self.device)
            host, port, matchkey = request_server(conn.host, conn.port, conn.key, self.settings.connect_timeout_s)
            remote = _connect(host, port, matchkey, self.settings, watchdog)
            return DeviceSession(
                remote, f"{self.device.name} ({host}:{port} via tracker {conn.host}:{conn.port} key '{conn.key}')",
                self.device,
            )
        except NascError:
            raise
        except Exception as exc:  # TVMError / RuntimeError / OSError from the RPC layer
            raise DeviceUnreachable(
                f"cannot open a session to {self.device.name} at {self.address}: {_short(exc)}; "
                f"start a server with `{self.start_hint()}`"
            ) from None

    def worker(self, slot: int = 0) -> Worker:
        """A session holder for one parallel worker."""
        return Worker(self, slot)


class Worker:
    """Keeps one session and runs calls on it; a dropped session is replaced and the call retried."""

    def __init__(self, source: SessionSource, slot: int = 0) -> None:
        self.source = source
        self.slot = slot
        self.session: DeviceSession | None = None
        self.target: tuple[str, int] | None = None  # the server of the current session
        self.retried = 0  # calls that needed more than one attempt (for reports)

    def run(self, fn: Callable[[DeviceSession], T], what: str = "measurement") -> T:
        """`fn(session)`, retried up to ``settings.retries`` times with doubling backoff on a fresh session."""
        settings = self.source.settings
        last: BaseException | None = None
        for attempt in range(settings.retries + 1):
            if attempt:
                self.retried += 1
                time.sleep(settings.backoff_s * (2 ** (attempt - 1)))
            watchdog = Watchdog(settings.session_timeout_s)
            try:
                with watchdog:
                    if self.session is None:
                        self.session = self.source.connect(self.slot, watchdog)
                        self.target = watchdog.target
                    else:
                        watchdog.target = self.target
                    return fn(self.session)
            except DeviceUnreachable as exc:
                last = exc
                self.drop()
            except NascError:
                raise
            except Exception as exc:  # the session dropped, the server died or the session timed out
                last = exc
                if watchdog.fired:
                    last = TimeoutError(f"no answer within {settings.session_timeout_s:g} s (server hung?): {exc}")
                self.drop()
        raise DeviceUnreachable(
            f"{what} on {self.source.device.name} failed {settings.retries + 1} times at {self.source.address}; "
            f"last error: {_short(last)}. Check the device, or start a server with `{self.source.start_hint()}`"
        )

    def drop(self) -> None:
        """Forget the current session."""
        if self.session is not None:
            self.session.close()
        self.session = None


def _short(exc: BaseException | None) -> str:
    text = str(exc).strip().splitlines()
    if not text:
        return type(exc).__name__
    # TVM errors carry long tracebacks; the last line says what happened.
    return text[-1][:300] if len(text) > 1 else text[0][:300]


@contextlib.contextmanager
def open_session(
    device: DeviceSpec, cache_dir: Path, settings: MeasureSettings | None = None
) -> Iterator[DeviceSession]:
    """One session to `device` for the duration of the `with` block (servers nasc started are stopped after)."""
    with SessionSource(device, cache_dir, settings) as source:
        worker = source.worker()
        session = worker.run(lambda s: s, what="connecting")
        try:
            yield session
        finally:
            session.close()

"""An RPC server or tracker as a child process: started in its own process group, stopped with no orphans.

Any command line works (the stock ``python -m tvm.exec.rpc_server``, the same inside an emulated
root file system, a tracker). Readiness is read from the stock "bind to HOST:PORT" log line, so the
port actually bound is known even when the server had to walk its ``--port``..``--port-end`` range.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from nasc.errors import DeviceUnreachable

_BIND_LINE = re.compile(rb"bind to (\S+):(\d+)")


class RemoteBindWarning(UserWarning):
    """An RPC server is bound to an address other machines can reach (allowed only when asked for)."""


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind_host(host: str, allow_remote: bool = False) -> None:
    """Refuse a non-loopback bind address unless explicitly allowed; warn when it is."""
    if is_loopback(host):
        return
    if not allow_remote:
        raise DeviceUnreachable(
            f"refusing to bind an RPC server to {host}: TVM RPC loads and runs code without "
            "authentication. Use 127.0.0.1, or pass --allow-remote-bind if you really mean it."
        )
    warnings.warn(
        f"binding a TVM RPC server to {host}; anyone who can reach it can run code on this machine "
        "(TVM RPC has no authentication)", RemoteBindWarning, stacklevel=2,
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def stock_server_command(
    host: str,
    port: int,
    port_end: int | None = None,
    *,
    tracker: str | None = None,
    key: str | None = None,
    python: str | None = None,
) -> list[str]:
    """``python -m tvm.exec.rpc_server ...`` exactly as a user would type it on a device."""
    cmd = [python or sys.executable, "-m", "tvm.exec.rpc_server", "--host", host, "--port", str(port),
           "--port-end", str(port_end if port_end is not None else port + 1)]
    if tracker:
        cmd += ["--tracker", tracker]
    if key:
        cmd += ["--key", key]
    return cmd


def tracker_command(host: str, port: int, port_end: int | None = None, *, python: str | None = None) -> list[str]:
    """``python -m tvm.exec.rpc_tracker ...``."""
    return [python or sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", host, "--port", str(port),
            "--port-end", str(port_end if port_end is not None else port + 1)]


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def exit_on_sigterm():  # -> Iterator[None]
    """While inside, SIGTERM raises SystemExit so `finally` blocks stop the servers nasc started.

    Only installed from the main thread and only over the default handler (a caller's own handler wins).
    """
    import threading

    install = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) in (
        signal.SIG_DFL, None)
    if install:
        signal.signal(signal.SIGTERM, _raise_exit)
    try:
        yield
    finally:
        if install:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


class RpcServerProcess:
    """A server process (RPC server or tracker) nasc owns for the duration of a `with` block.

    ``start()`` launches `command` in a new session (own process group) with output to a log file;
    ``wait_until_listening()`` returns the bound port once the process logs "bind to HOST:PORT";
    ``stop()`` sends SIGTERM then SIGKILL to the whole group, so forked session workers die too.
    """

    def __init__(
        self,
        command: Sequence[str],
        host: str,
        port: int,
        *,
        name: str = "rpc server",
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.command = list(command)
        self.host = host
        self.port = port
        self.name = name
        self.env = env
        self.cwd = cwd
        self._own_log = log_path is None
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="nasc-rpc-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """host:port for messages."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The process id (also its process group id), or None before start."""
        return self.proc.pid if self.proc else None

    def start(self) -> RpcServerProcess:
        """Launch the process in its own process group."""
        if self.proc is not None:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self.env,
                cwd=self.cwd,
            )
        return self

    def log_tail(self, lines: int = 15) -> str:
        """The last lines the process wrote."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def wait_until_listening(self, timeout_s: float = 60.0) -> int:
        """Block until the process logs its bound port (or accepts TCP when it logs nothing)."""
        if self.proc is None:
            self.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                match = _BIND_LINE.search(self.log_path.read_bytes())
            except OSError:
                match = None
            if match:
                self.port = int(match.group(2))
                return self.port
            if not self.alive():
                raise DeviceUnreachable(
                    f"{self.name} exited (code {self.proc.returncode if self.proc else '?'}) before listening on "
                    f"{self.address}; command: {' '.join(self.command)}\nits log:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        message = (
            f"{self.name} did not start listening on {self.address} within {timeout_s:.0f} s; "
            f"command: {' '.join(self.command)}\nits log:\n{self.log_tail()}"
        )
        self.stop()
        raise DeviceUnreachable(message)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the whole process group (for fault tests and hard stops)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def stop(self, grace_s: float = 3.0) -> None:
        """SIGTERM the group, then SIGKILL what is left; reap the child. Safe to call twice."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.kill(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace_s)
        # Forked session workers may outlive the leader: always sweep the group.
        self.kill(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=grace_s)
        if self._own_log:
            with contextlib.suppress(OSError):
                self.log_path.unlink()

    def __enter__(self) -> RpcServerProcess:
        self.start()
        try:
            self.wait_until_listening()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

"""RpcServerProcess with real child processes: readiness from the log, group kill, clean failures."""

from __future__ import annotations

import os
import sys
import time

import psutil
import pytest

from nasc.devices.server import RemoteBindWarning, RpcServerProcess, check_bind_host, free_port, is_loopback
from nasc.errors import DeviceUnreachable

# Prints the stock server's "bind to" line, forks a grandchild that ignores SIGTERM, then sleeps.
_FAKE_SERVER = """
import os, signal, sys, time
port = int(sys.argv[1])
if os.fork() == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(600)
    sys.exit(0)
time.sleep(0.3)
print(f"INFO:RPCServer:bind to 127.0.0.1:{port + 3}", flush=True)
time.sleep(600)
"""


def test_loopback_only_unless_allowed(capsys: pytest.CaptureFixture[str]) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    check_bind_host("127.0.0.1")
    with pytest.raises(DeviceUnreachable, match="without authentication"):
        check_bind_host("0.0.0.0")
    with pytest.warns(RemoteBindWarning, match="no authentication"):
        check_bind_host("0.0.0.0", allow_remote=True)  # allowed, with a warning


def test_ready_port_from_log_and_group_is_killed() -> None:
    port = free_port()
    proc = RpcServerProcess([sys.executable, "-c", _FAKE_SERVER, str(port)], "127.0.0.1", port, name="fake")
    with proc:
        assert proc.port == port + 3  # the port the server reports, not the one asked for
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) == 1
    assert not proc.alive()
    time.sleep(0.2)
    for child in children:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE


def test_early_exit_reports_the_log() -> None:
    cmd = [sys.executable, "-c", "import sys; print('cannot import cloudpickle'); sys.exit(3)"]
    proc = RpcServerProcess(cmd, "127.0.0.1", free_port(), name="broken server")
    expected = r"(?s)broken server exited \(code 3\).*cannot import cloudpickle"
    with pytest.raises(DeviceUnreachable, match=expected), proc:
        pass


def test_silence_times_out_and_stops() -> None:
    proc = RpcServerProcess([sys.executable, "-c", "import time; time.sleep(600)"], "127.0.0.1", free_port())
    proc.start()
    with pytest.raises(DeviceUnreachable, match="did not start listening"):
        proc.wait_until_listening(timeout_s=0.5)
    assert not proc.alive()
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)

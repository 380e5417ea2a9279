"""Real TVM RPC on loopback: local sessions, tracker farms in parallel, a server SIGKILLed mid-build, clean errors.

Every server and tracker here is the stock `python -m tvm.exec.rpc_server` / `rpc_tracker`, on free ports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from nasc.compiler.toolchain import toolchain_id
from nasc.devices.latency_table import LatencyTable
from nasc.devices.registry import resolve_device
from nasc.devices.rpc import SessionSource, open_session
from nasc.devices.server import RpcServerProcess, free_port, stock_server_command, tracker_command
from nasc.devices.settings import MeasureSettings
from nasc.devices.spec import Connection, DeviceSpec
from nasc.devices.tracker import tracker_summary, wait_for_servers
from nasc.errors import DeviceUnreachable
from nasc.pipeline.blockbuild import BlockCompiler, export_block
from nasc.pipeline.latency_table_build import build_table
from nasc.search.space import build_block
from nasc.signature import BlockSignature

REPO = Path(__file__).resolve().parents[2]
SETTINGS = MeasureSettings(warmup=1, number=5, repeat=10, remeasure=1, connect_timeout_s=30, retries=3,
                           backoff_s=0.2, session_timeout_s=120, passes=1)
# Small, distinct blocks: compile in well under a second each.
BLOCKS = [BlockSignature("mbconv", 8, 8, 8, kernel=k, expand=e, idskip=True) for k in (3, 5) for e in (1, 3, 6)]


@pytest.fixture(scope="module")
def tracker() -> Iterator[RpcServerProcess]:
    port = free_port()
    with RpcServerProcess(tracker_command("127.0.0.1", port, port + 1), "127.0.0.1", port, name="tracker") as proc:
        yield proc


def _servers(tracker: RpcServerProcess, key: str, count: int) -> list[RpcServerProcess]:
    procs = []
    for _ in range(count):
        port = free_port()
        cmd = stock_server_command("127.0.0.1", port, port + 1, tracker=tracker.address, key=key)
        procs.append(RpcServerProcess(cmd, "127.0.0.1", port, name=f"server {key}").start())
    for proc in procs:
        proc.wait_until_listening(90)
    wait_for_servers(tracker.host, tracker.port, key, count, timeout_s=60)
    return procs


def _farm(tracker: RpcServerProcess, key: str) -> DeviceSpec:
    """This CPU behind the tracker; threads 0: the stock servers here run as TVM starts them."""
    local = resolve_device("local")
    return dataclasses.replace(local, name=f"farm-{key}", threads=0,
                               connection=Connection("tracker", tracker.host, tracker.port, key))


def _precompile(device: DeviceSpec, blocks: list[BlockSignature], cache: Path) -> None:
    with BlockCompiler(device, jobs=2) as compiler:
        futures = [compiler.submit(export_block(b, build_block, cache)) for b in blocks]
        for fut in futures:
            fut.result()


def _our_rpc_processes() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "tvm.exec.rpc_server" in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def test_measure_a_model_on_local(tmp_path: Path) -> None:
    from nasc.pipeline.config import parse_config
    from nasc.pipeline.measure import measure_model

    config = parse_config(
        f'[project]\noutput_dir = "{tmp_path / "out"}"\ncache_dir = "{tmp_path / "cache"}"\n'
        "[measure]\nwarmup = 2\nnumber = 5\nrepeat = 10\n", "build.toml", str(tmp_path))
    report = measure_model(REPO / "examples" / "mbconv-32.onnx", config.device("local"), config)
    m = report.measurement
    assert 0 < m.median_ms < 1000 and m.p90_ms >= m.median_ms and m.repeat == 10 and len(m.runs_ms) == 10
    assert report.parity.passed and report.parity.max_abs_err < 1e-3
    assert "127.0.0.1" in m.address and not m.emulated
    data = json.loads(Path(report.json_path).read_text())
    assert data["measurement"]["median_ms"] == m.median_ms
    assert _our_rpc_processes() == []  # the server nasc started is gone


@pytest.mark.parametrize("threads", [1, 2])
def test_the_local_server_runs_the_device_threads_and_a_mismatch_is_refused(tmp_path: Path, threads: int) -> None:
    from nasc.devices.rpc import DeviceSession
    from nasc.errors import MeasurementError

    device = dataclasses.replace(resolve_device("local"), threads=threads)
    with open_session(device, tmp_path, SETTINGS) as session:
        assert session.runtime_threads() == threads == session.check_threads()
        other = DeviceSession(session.remote, session.address, dataclasses.replace(device, threads=threads + 1))
        with pytest.raises(MeasurementError, match=f"runs {threads} runtime thread.*TVM_NUM_THREADS={threads + 1}"):
            other.check_threads()
    assert resolve_device("local").threads == (os.cpu_count() or 1)


def test_two_servers_under_one_key_fill_the_table_in_parallel(tracker: RpcServerProcess, tmp_path: Path) -> None:
    servers = _servers(tracker, "pair", 2)
    try:
        device = _farm(tracker, "pair")
        _precompile(device, BLOCKS, tmp_path)
        with LatencyTable.in_cache(tmp_path, toolchain_id()) as table, \
                SessionSource(device, tmp_path, SETTINGS) as source:
            assert source.parallelism() == 2
            report = build_table(device, BLOCKS, table, tmp_path, SETTINGS, build_block, source=source)
            assert report.sessions == 2 and report.measured == len(BLOCKS)
            used = {a.split(" via ")[0].split("(")[-1] for a in report.servers_used}
            assert used == {f"127.0.0.1:{s.port}" for s in servers}, report.servers_used
            assert table.count() == len(BLOCKS) and table.integrity_problems() == []
            assert table.missing(BLOCKS, device) == []
            for entry in table.entries(device):  # one timing per block: no passes recorded
                assert "passes" not in entry.measurement.extra and entry.measurement.repeat == SETTINGS.repeat
            again = build_table(device, BLOCKS, table, tmp_path, SETTINGS, build_block, source=source)
            assert again.measured == 0 and again.already_present == len(BLOCKS)  # resumes: nothing left
    finally:
        for s in servers:
            s.stop()


@pytest.mark.parametrize("fault", [signal.SIGKILL, signal.SIGSTOP], ids=["dies", "hangs"])
def test_server_fails_during_a_build(tracker: RpcServerProcess, tmp_path: Path, fault: signal.Signals) -> None:
    key = f"fragile-{fault.name.lower()}"
    servers = _servers(tracker, key, 2)
    victim = servers[0]
    blocks = [BlockSignature("mbconv", 16, 16, 16, kernel=k, expand=e, idskip=True) for k in (3, 5, 7) for e in (3, 6)]
    # session_timeout_s is also the client's watchdog: a stopped server is given up on after 6 s.
    # Two passes over the blocks: a block whose pass died with the server is timed again on the other one.
    settings = dataclasses.replace(SETTINGS, number=20, repeat=20, session_timeout_s=6, passes=2)
    killed = threading.Event()
    started = threading.Event()

    def killer() -> None:
        # Wait until the victim is inside a session (it forks a worker per session), then SIGKILL its group.
        started.wait(120)
        proc = psutil.Process(victim.pid)
        idle = len(proc.children(recursive=True))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if len(proc.children(recursive=True)) > idle:
                victim.kill(fault)
                killed.set()
                return
            time.sleep(0.005)

    try:
        device = _farm(tracker, key)
        _precompile(device, blocks, tmp_path)
        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        with LatencyTable.in_cache(tmp_path, toolchain_id()) as table, \
                SessionSource(device, tmp_path, settings) as source:
            report = build_table(device, blocks, table, tmp_path, settings, build_block, source=source, sessions=2,
                                 progress=lambda event: started.set() if event.stage == "lut-compile" else None)
            thread.join(5)
            assert killed.is_set(), "the victim server was never seen in a session"
            assert report.measured == len(blocks) and report.retried >= 1
            assert table.count() == len(blocks) and table.integrity_problems() == []
            assert table.missing(blocks, device) == []
            for entry in table.entries(device):  # the median of the two passes' medians, every repeat kept
                m = entry.measurement
                assert entry.median_ms > 0 and m.repeat == 40 and len(m.runs_ms) == 40
                assert m.extra["passes"] == 2 and entry.median_ms == pytest.approx(
                    sum(m.extra["pass_medians_ms"]) / 2)
            used = {a.split(" via ")[0].split("(")[-1] for a in report.servers_used}
            assert f"127.0.0.1:{servers[1].port}" in used
        if fault == signal.SIGKILL:
            assert tracker_summary(tracker.host, tracker.port).key(key).servers == 1
    finally:
        victim.kill(signal.SIGCONT)
        for s in servers:
            s.stop()


def test_unreachable_tracker_is_a_clean_error(tmp_path: Path) -> None:
    port = free_port()
    device = dataclasses.replace(resolve_device("rpi4"), connection=Connection("tracker", "127.0.0.1", port, "rpi4"))
    with SessionSource(device, tmp_path, SETTINGS) as source, pytest.raises(DeviceUnreachable) as err:
        source.worker().run(lambda s: s, what="connecting")
    text = str(err.value)
    assert f"127.0.0.1:{port}" in text and "python -m tvm.exec.rpc_tracker" in text
    from nasc.cli import main

    result = CliRunner().invoke(main, ["devices", "--tracker", f"127.0.0.1:{port}"])
    assert result.exit_code == DeviceUnreachable.exit_code
    assert f"no RPC tracker at 127.0.0.1:{port}" in result.output and "Traceback" not in result.output


def test_key_without_servers_names_key_and_command(tracker: RpcServerProcess, tmp_path: Path) -> None:
    settings = dataclasses.replace(SETTINGS, connect_timeout_s=1.0, retries=1, backoff_s=0.1)
    device = _farm(tracker, "nobody")
    with SessionSource(device, tmp_path, settings) as source, pytest.raises(DeviceUnreachable) as err:
        source.worker().run(lambda s: s, what="connecting")
    text = str(err.value)
    assert "key 'nobody'" in text and f"--tracker {tracker.address} --key nobody" in text


def test_devices_cli_shows_tracker_keys(tracker: RpcServerProcess) -> None:
    from nasc.cli import main

    servers = _servers(tracker, "shown", 2)
    try:
        result = CliRunner().invoke(main, ["devices", "--tracker", tracker.address, "--json"])
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        key = next(k for k in data["tracker"]["keys"] if k["key"] == "shown")
        assert key == {"key": "shown", "servers": 2, "free": 2, "pending": 0}
        assert {d["name"] for d in data["devices"]} >= {"local", "rpi4", "rpi4-emulated", "jetson-nano"}
    finally:
        for s in servers:
            s.stop()


def test_local_server_stops_on_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), open_session(resolve_device("local"), tmp_path, SETTINGS) as s:
        assert s.dev is not None and "127.0.0.1" in s.address
        assert len(_our_rpc_processes()) >= 1
        raise RuntimeError("boom")
    assert _our_rpc_processes() == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_local_server_stops_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    # The child takes Ctrl-C as a terminal user's process does, even when the test runner itself was
    # started in the background (a non-interactive shell starts background jobs with SIGINT ignored).
    script = textwrap.dedent("""
        import signal, sys, time
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from pathlib import Path
        from nasc.devices.registry import resolve_device
        from nasc.devices.rpc import SessionSource
        with SessionSource(resolve_device("local"), Path(sys.argv[1])) as source:
            source.connect()
            print(source._owned[0].pid, flush=True)
            time.sleep(120)
    """)
    child = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    server_pid = None
    try:
        server_pid = int(child.stdout.readline())  # type: ignore[union-attr]
        group = [psutil.Process(server_pid), *psutil.Process(server_pid).children(recursive=True)]
        child.send_signal(sig)
        child.wait(30)
        time.sleep(0.3)
        for proc in group:
            assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    finally:
        if child.poll() is None:
            child.kill()
        if server_pid is not None:  # never leave a server behind, even when the test fails
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(server_pid, signal.SIGKILL)

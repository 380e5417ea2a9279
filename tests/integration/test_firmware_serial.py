"""The nasc serial protocol between real processes over pseudo-terminals, through a damaging relay.

Sender, receiver and relay are separate processes; the relay (tests/firmware_relay.py) corrupts, drops
and delays frames at a set rate and can pace the line like a 921600-baud UART.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from firmware_testlib import write_compile_dir

from nasc.pipeline.package import package

TESTS = Path(__file__).resolve().parents[1]
RELAY = TESTS / "firmware_relay.py"
SEND = TESTS / "firmware_send.py"
UART_921600_BYTES_PER_S = 92160  # 921600 baud, 10 bits per byte (8N1)


@contextlib.contextmanager
def relay(tmp_path: Path, rate: float, seed: int, bytes_per_s: float = 0) -> Iterator[tuple[dict, Path]]:
    """Start the relay; yield its ports and the path its counts are written to when it stops."""
    stats = tmp_path / f"relay-{seed}.json"
    proc = subprocess.Popen([sys.executable, str(RELAY), "--rate", str(rate), "--seed", str(seed),
                             "--bytes-per-s", str(bytes_per_s), "--stats", str(stats)],
                            stdout=subprocess.PIPE, text=True)
    try:
        ports = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
        yield ports, stats
    finally:
        proc.terminate()
        proc.wait(10)


class Receiver:
    """The receiver module as a process (what a board runs)."""

    def __init__(self, port: str, dest: Path, log: Path, *extra: str) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nasc.firmware_bridge.receiver", "--port", port, "--dest", str(dest), *extra],
            stderr=open(log, "w"),  # noqa: SIM115 (the child owns it)
        )
        deadline = time.monotonic() + 20
        while "listening" not in self.text():
            assert self.proc.poll() is None, f"receiver exited: {self.text()}"
            assert time.monotonic() < deadline, "receiver did not start"
            time.sleep(0.05)

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)


def _payloads(folder: Path, count: int, seed: int, low: int, high: int) -> list[Path]:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"payload-{i:03d}.bin"
        path.write_bytes(rng.randbytes(rng.randint(low, high)))
        paths.append(path)
    return paths


def _send(port: str, files: list[Path], *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(SEND), port, *map(str, files), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_part(part: Path, at_least: int, proc: subprocess.Popen, timeout_s: float = 60) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        size = part.stat().st_size if part.exists() else 0
        if size >= at_least:
            return size
        assert proc.poll() is None, "the transfer ended before the test could break it; slow the line down"
        time.sleep(0.01)
    raise AssertionError(f"{part} never reached {at_least} bytes")


def test_100_transfers_at_5_percent_damage_arrive_byte_identical(tmp_path: Path) -> None:
    files = _payloads(tmp_path / "src", 100, seed=3, low=100, high=3000)
    dest = tmp_path / "dest"
    with relay(tmp_path, rate=0.05, seed=11) as (ports, stats_path):
        receiver = Receiver(ports["receiver_port"], dest, tmp_path / "receiver.log")
        try:
            sender = _send(ports["sender_port"], files)
            stdout, stderr = sender.communicate(timeout=180)
            assert sender.returncode == 0, stderr
        finally:
            receiver.stop()
    results = [json.loads(line) for line in stdout.splitlines()]
    assert len(results) == 100
    for path in files:
        assert (dest / path.name).read_bytes() == path.read_bytes(), path.name
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in files)  # no .part left over
    stats = json.loads(stats_path.read_text())
    frames = stats["to_receiver_frames"] + stats["to_sender_frames"]
    damaged = {kind: sum(v for k, v in stats.items() if k.endswith(kind)) for kind in ("corrupt", "drop", "delay")}
    assert all(n > 10 for n in damaged.values()), stats  # every kind of damage really happened, many times
    assert 0.03 < sum(damaged.values()) / frames < 0.07, stats
    assert sum(r["frames_resent"] for r in results) > 0 and sum(r["naks"] for r in results) > 0


def test_a_receiver_killed_mid_transfer_resumes_after_restart(tmp_path: Path) -> None:
    (payload,) = _payloads(tmp_path / "src", 1, seed=5, low=400_000, high=400_000)
    dest = tmp_path / "dest"
    with relay(tmp_path, rate=0.0, seed=1, bytes_per_s=UART_921600_BYTES_PER_S) as (ports, _):
        first = Receiver(ports["receiver_port"], dest, tmp_path / "first.log")
        sender = _send(ports["sender_port"], [payload], "--chunk-bytes", "1024", "--window-frames", "8",
                       "--ack-timeout-s", "0.3")
        try:
            cut = _wait_for_part(dest / f".{payload.name}.part", 100_000, sender)
            first.kill()
            time.sleep(0.5)
            second = Receiver(ports["receiver_port"], dest, tmp_path / "second.log")
            stdout, stderr = sender.communicate(timeout=120)
            second.stop()
        finally:
            first.kill()
            if sender.poll() is None:
                sender.kill()
    assert sender.returncode == 0, stderr
    assert (dest / payload.name).read_bytes() == payload.read_bytes()
    resumed = re.search(r"resuming from offset (\d+)", second.text())
    assert resumed and int(resumed.group(1)) >= cut, second.text()
    result = json.loads(stdout)
    assert result["handshake_offsets"][0] == 0 and result["handshake_offsets"][-1] == int(resumed.group(1))
    # it did not start over: fewer bytes went out than the whole file plus what had arrived before the kill
    assert result["frames_sent"] * 1024 < payload.stat().st_size + cut


def test_a_sender_restarted_after_a_broken_link_resumes(tmp_path: Path) -> None:
    (payload,) = _payloads(tmp_path / "src", 1, seed=6, low=300_000, high=300_000)
    dest = tmp_path / "dest"
    with relay(tmp_path, rate=0.0, seed=2, bytes_per_s=UART_921600_BYTES_PER_S) as (ports, _):
        receiver = Receiver(ports["receiver_port"], dest, tmp_path / "receiver.log")
        try:
            first = _send(ports["sender_port"], [payload], "--chunk-bytes", "1024", "--window-frames", "8")
            _wait_for_part(dest / f".{payload.name}.part", 80_000, first)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            second = _send(ports["sender_port"], [payload], "--chunk-bytes", "1024", "--window-frames", "8")
            stdout, stderr = second.communicate(timeout=120)
        finally:
            receiver.stop()
    assert second.returncode == 0, stderr
    assert (dest / payload.name).read_bytes() == payload.read_bytes()
    result = json.loads(stdout)
    assert result["resumed_from_bytes"] >= 80_000
    assert "from offset 0" in receiver.text() and receiver.text().count("receiving ") == 1


def test_nasc_flash_sends_a_bundle_that_verifies_on_arrival(tmp_path: Path) -> None:
    folder = write_compile_dir(tmp_path / "compiled", os.urandom(40_000))
    bundle = Path(package(folder, tmp_path / "model-local.tar.gz").bundle)
    project = tmp_path / "build.toml"
    project.write_text("[package]\nack_timeout_s = 0.2\nstall_timeout_s = 20.0\nchunk_bytes = 512\n")
    dest = tmp_path / "board"
    with relay(tmp_path, rate=0.05, seed=21) as (ports, _):
        receiver = Receiver(ports["receiver_port"], dest, tmp_path / "receiver.log", "--once")
        try:
            flashed = subprocess.run(
                [sys.executable, "-m", "nasc", "--config", str(project), "flash", str(bundle),
                 "--port", ports["sender_port"]],
                capture_output=True, text=True, timeout=120,
            )
            assert flashed.returncode == 0, flashed.stdout + flashed.stderr
            assert receiver.proc.wait(20) == 0  # --once: exits after saving
        finally:
            receiver.stop()
    assert (dest / bundle.name).read_bytes() == bundle.read_bytes()
    assert "bytes/s" in flashed.stdout and "confirmed by the receiver" in flashed.stdout
    verified = subprocess.run([sys.executable, "-m", "nasc", "verify", str(dest / bundle.name)],
                              capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0 and "OK" in verified.stdout


def test_nasc_flash_refuses_a_corrupt_bundle_and_a_missing_port(tmp_path: Path) -> None:
    folder = write_compile_dir(tmp_path / "compiled", b"library")
    bundle = Path(package(folder, tmp_path / "b.tar.gz").bundle)
    missing = subprocess.run([sys.executable, "-m", "nasc", "flash", str(bundle), "--port", "/dev/ttyNOPE9"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 12 and "/dev/ttyNOPE9 does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(bundle.read_bytes()[:-40])
    corrupt = subprocess.run([sys.executable, "-m", "nasc", "flash", str(broken), "--port", "/dev/ttyNOPE9"],
                             capture_output=True, text=True, timeout=60)
    assert corrupt.returncode == 11 and "broken.tar.gz" in corrupt.stderr


def _children() -> set[str]:
    return set(subprocess.run(["pgrep", "-P", str(os.getpid())], capture_output=True, text=True).stdout.split())


@pytest.fixture(autouse=True)
def _no_strays() -> Iterator[None]:
    before = _children()
    yield
    # every process a test started is reaped in its finally blocks; a leftover would show here
    left = _children() - before
    assert not left, f"processes left running: {left}"

"""YMODEM against a peer nobody here wrote: Debian's lrzsz (rb/sb), over a pty pair made by socat."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from firmware_testlib import write_compile_dir

from nasc.firmware_bridge.port import open_port
from nasc.firmware_bridge.ymodem import YmodemSender
from nasc.pipeline.package import package

INSTALL_HINT = "needs socat and lrzsz: apt-get install -y lrzsz socat"


@pytest.fixture()
def pty_pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two linked pseudo-terminals (socat); yields their paths (nasc's end, lrzsz's end)."""
    assert shutil.which("socat") and shutil.which("rb") and shutil.which("sb"), INSTALL_HINT
    ours, theirs = tmp_path / "tty-nasc", tmp_path / "tty-lrzsz"
    proc = subprocess.Popen(["socat", f"pty,raw,echo=0,link={ours}", f"pty,raw,echo=0,link={theirs}"],
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not (ours.exists() and theirs.exists()):
            assert proc.poll() is None and time.monotonic() < deadline, "socat did not make the pty pair"
            time.sleep(0.02)
        yield str(ours), str(theirs)
    finally:
        proc.terminate()
        proc.wait(10)


def _lrzsz(args: list[str], tty: str, cwd: Path) -> subprocess.Popen:
    """Run an lrzsz program with its stdin and stdout on `tty`, as on a serial console."""
    with open(tty, "rb") as stdin, open(tty, "wb") as stdout:
        return subprocess.Popen(args, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, cwd=cwd)


def test_rb_receives_from_nasc_byte_identical(pty_pair: tuple[str, str], tmp_path: Path) -> None:
    ours, theirs = pty_pair
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(70_001))  # not a multiple of the block size: padding must be cut
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    # Opening a port flushes its input, so rb starts after the sender has the port (else its first 'C'
    # is lost and rb asks again only 10 s later).
    with open_port(ours, 115200) as port:
        rb = _lrzsz(["rb", "--ymodem"], theirs, inbox)
        try:
            YmodemSender(port).send(payload)
            rb_code = rb.wait(30)
            assert rb_code == 0, rb.stderr.read().decode(errors="replace")  # type: ignore[union-attr]
        finally:
            if rb.poll() is None:
                rb.kill()
                rb.wait()
    assert (inbox / "payload.bin").read_bytes() == payload.read_bytes()


def test_nasc_flash_ymodem_to_rb_delivers_the_bundle(pty_pair: tuple[str, str], tmp_path: Path) -> None:
    ours, theirs = pty_pair
    bundle = Path(package(write_compile_dir(tmp_path / "c", os.urandom(5000)), tmp_path / "model-local.tar.gz").bundle)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    flash = subprocess.Popen([sys.executable, "-m", "nasc", "flash", str(bundle), "--port", ours, "--protocol",
                              "ymodem", "--baud", "115200"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # let nasc open the port first (see above); if it is late, rb's next 'C' comes 10 s later
    rb = _lrzsz(["rb", "--ymodem"], theirs, inbox)
    try:
        stdout, stderr = flash.communicate(timeout=90)
        flashed = subprocess.CompletedProcess(flash.args, flash.returncode, stdout, stderr)
        rb_code = rb.wait(30)
        rb_err = rb.stderr.read().decode(errors="replace")  # type: ignore[union-attr]
        assert flashed.returncode == 0, flashed.stdout + flashed.stderr + rb_err
        assert rb_code == 0, rb_err
    finally:
        for proc in (rb, flash):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert (inbox / bundle.name).read_bytes() == bundle.read_bytes()
    assert "(ymodem)" in flashed.stdout, flashed.stdout


def test_sb_sends_to_the_nasc_receiver_byte_identical(pty_pair: tuple[str, str], tmp_path: Path) -> None:
    ours, theirs = pty_pair
    outbox, dest = tmp_path / "outbox", tmp_path / "dest"
    outbox.mkdir()
    files = {"big.bin": os.urandom(100_000), "small.bin": os.urandom(3000), "one.bin": b"\x1a"}  # 0x1a = pad byte
    for name, data in files.items():
        (outbox / name).write_bytes(data)
    receiver = subprocess.Popen(
        [sys.executable, "-m", "nasc.firmware_bridge.receiver", "--port", ours, "--dest", str(dest),
         "--protocol", "ymodem", "--once"], stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        sb = _lrzsz(["sb", "--ymodem", *files], theirs, outbox)
        assert sb.wait(60) == 0, sb.stderr.read().decode(errors="replace")  # type: ignore[union-attr]
        assert receiver.wait(30) == 0, receiver.stderr.read()  # type: ignore[union-attr]
    finally:
        for proc in (receiver,):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for name, data in files.items():
        assert (dest / name).read_bytes() == data, name
    assert sorted(p.name for p in dest.iterdir()) == sorted(files)  # no .part files left


def test_ymodem_recovers_from_a_damaged_line(tmp_path: Path) -> None:
    """nasc's YMODEM sender and receiver through the relay corrupting, dropping and delaying 5% of chunks."""
    import json
    import threading

    from nasc.firmware_bridge.ymodem import YmodemReceiver

    relay_script = Path(__file__).resolve().parents[1] / "firmware_relay.py"
    stats = tmp_path / "relay.json"
    relay = subprocess.Popen([sys.executable, str(relay_script), "--raw", "--rate", "0.05", "--seed", "4",
                              "--bytes-per-s", "92160", "--stats", str(stats)], stdout=subprocess.PIPE, text=True)
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(100_000))
    dest = tmp_path / "dest"
    saved: list[Path] = []
    errors: list[BaseException] = []
    try:
        ports = json.loads(relay.stdout.readline())  # type: ignore[union-attr]
        with open_port(ports["receiver_port"], 921600) as rx_port, open_port(ports["sender_port"], 921600) as tx_port:
            receiver = YmodemReceiver(rx_port, dest, 1 << 20, lambda message: None, start_timeout_s=60,
                                      block_timeout_s=0.5)

            def receive() -> None:
                try:
                    saved.extend(receiver.receive_batch())
                except BaseException as exc:
                    errors.append(exc)

            thread = threading.Thread(target=receive, daemon=True)
            thread.start()
            resent = YmodemSender(tx_port, block_timeout_s=1.5).send(payload)
            thread.join(60)
    finally:
        relay.terminate()
        relay.wait(10)
    assert not errors, errors
    assert saved == [dest / "payload.bin"] and saved[0].read_bytes() == payload.read_bytes()
    counts = json.loads(stats.read_text())
    assert sum(v for k, v in counts.items() if k.endswith(("_corrupt", "_drop", "_delay"))) > 0, counts
    assert resent > 0, counts

"""Receiver and sender logic: refusals, sha256 check before install, resume from disk, port errors."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import tty
from pathlib import Path

import pytest
import serial

from nasc.errors import TransferError
from nasc.firmware_bridge import wire
from nasc.firmware_bridge.port import open_port
from nasc.firmware_bridge.receiver import NascReceiver
from nasc.firmware_bridge.sender import NascSender, SenderSettings
from nasc.firmware_bridge.wire import Frame, FrameReader, Hello, Kind, NakReason


class MemoryPort:
    """Collects what the receiver writes (the receiver is driven through handle())."""

    def __init__(self) -> None:
        self.reader = FrameReader()
        self.replies: list[Frame] = []

    def write(self, data: bytes) -> int:
        self.replies += [f for f in self.reader.feed(data) if isinstance(f, Frame)]
        return len(data)

    def read(self, size: int = 1) -> bytes:
        return b""

    @property
    def in_waiting(self) -> int:
        return 0

    def last(self) -> Frame:
        return self.replies[-1]


def _hello(name: str, content: bytes, announce: bytes | None = None) -> Frame:
    sha = hashlib.sha256(announce if announce is not None else content).digest()
    return Frame(Kind.HELLO, 1, Hello(name, len(content), sha, 1024).pack())


def _data(seq: int, offset: int, chunk: bytes) -> Frame:
    return Frame(Kind.DATA, seq, wire.OFFSET.pack(offset) + chunk)


def test_receiver_saves_after_the_sha256_matches(tmp_path: Path) -> None:
    port = MemoryPort()
    rx = NascReceiver(port, tmp_path)
    content = os.urandom(3000)
    rx.handle(_hello("model.tar.gz", content))
    assert port.last().kind == Kind.READY and wire.READY.unpack(port.last().payload)[0] == 0
    for i, offset in enumerate(range(0, 3000, 1000)):
        rx.handle(_data(2 + i, offset, content[offset : offset + 1000]))
        assert wire.OFFSET.unpack(port.last().payload) == (offset + 1000,)
    assert not (tmp_path / "model.tar.gz").exists()  # nothing in place before END
    rx.handle(Frame(Kind.END, 9, hashlib.sha256(content).digest()))
    status, digest = wire.DONE.unpack(port.last().payload)
    assert status == 0 and digest == hashlib.sha256(content).digest()
    assert (tmp_path / "model.tar.gz").read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tar.gz"]  # .part and .part.json gone


def test_receiver_discards_a_file_whose_sha256_differs(tmp_path: Path) -> None:
    port = MemoryPort()
    rx = NascReceiver(port, tmp_path)
    content = b"A" * 500
    rx.handle(_hello("f.bin", content, announce=b"B" * 500))
    rx.handle(_data(2, 0, content))
    rx.handle(Frame(Kind.END, 3, hashlib.sha256(b"B" * 500).digest()))
    assert port.last().kind == Kind.DONE and wire.DONE.unpack(port.last().payload)[0] == 1
    assert list(tmp_path.iterdir()) == []


def test_receiver_asks_for_gaps_and_reacknowledges_duplicates(tmp_path: Path) -> None:
    port = MemoryPort()
    rx = NascReceiver(port, tmp_path)
    content = os.urandom(3000)
    rx.handle(_hello("f.bin", content))
    rx.handle(_data(2, 0, content[:1000]))
    rx.handle(_data(3, 2000, content[2000:]))  # 1000..2000 lost
    assert port.last().kind == Kind.NAK and wire.NAK.unpack(port.last().payload) == (1000, NakReason.OUT_OF_ORDER)
    count = len(port.replies)
    rx.handle(_data(4, 2000, content[2000:]))  # only one NAK per gap
    assert len(port.replies) == count
    rx.handle(_data(5, 0, content[:1000]))  # a duplicate: the ACK was lost
    assert port.last().kind == Kind.ACK and wire.OFFSET.unpack(port.last().payload) == (1000,)
    rx.handle(Frame(Kind.END, 6, hashlib.sha256(content).digest()))
    assert port.last().kind == Kind.NAK and wire.NAK.unpack(port.last().payload) == (1000, NakReason.INCOMPLETE)


def test_a_restarted_receiver_resumes_from_the_bytes_on_disk(tmp_path: Path) -> None:
    content = os.urandom(4000)
    first = NascReceiver(MemoryPort(), tmp_path)
    first.handle(_hello("f.bin", content))
    first.handle(_data(2, 0, content[:1500]))
    # the process dies here (no close); a new one starts
    port = MemoryPort()
    second = NascReceiver(port, tmp_path)
    second.handle(_data(3, 1500, content[1500:2500]))
    assert wire.NAK.unpack(port.last().payload)[1] == NakReason.NO_SESSION
    second.handle(_hello("f.bin", content))
    assert wire.READY.unpack(port.last().payload)[0] == 1500
    second.handle(_data(4, 1500, content[1500:]))
    second.handle(Frame(Kind.END, 5, hashlib.sha256(content).digest()))
    assert (tmp_path / "f.bin").read_bytes() == content
    # a different file under the same name starts over
    third_port = MemoryPort()
    third = NascReceiver(third_port, tmp_path)
    third.handle(_hello("g.bin", content))
    third.handle(_data(2, 0, content[:100]))
    NascReceiver(third_port, tmp_path).handle(_hello("g.bin", content[::-1]))
    assert wire.READY.unpack(third_port.last().payload)[0] == 0


@pytest.mark.parametrize("name", ["../escape.bin", "a/b.bin", ".hidden", "", "x" * 300, "bad\x00name"])
def test_receiver_refuses_unsafe_names(tmp_path: Path, name: str) -> None:
    port = MemoryPort()
    NascReceiver(port, tmp_path / "dest").handle(_hello(name, b"data"))
    assert port.last().kind == Kind.ABORT and b"not a plain name" in port.last().payload
    assert not (tmp_path / "escape.bin").exists() and not (tmp_path / "dest").exists()


def test_receiver_refuses_files_over_its_limit(tmp_path: Path) -> None:
    port = MemoryPort()
    NascReceiver(port, tmp_path, max_bytes=100).handle(_hello("big.bin", b"x" * 101))
    assert port.last().kind == Kind.ABORT and b"--max-bytes 100" in port.last().payload


class Stopped(Exception):
    pass


class PtyEnd:
    """The master side of a pty as a port (the receiver under test runs on it in a thread)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.stop = threading.Event()

    def read(self, size: int = 1) -> bytes:
        import select

        if self.stop.is_set():
            raise Stopped
        if select.select([self.fd], [], [], 0.02)[0]:
            return os.read(self.fd, max(size, 1))
        return b""

    def write(self, data: bytes) -> int:
        return os.write(self.fd, data)

    @property
    def in_waiting(self) -> int:
        return 0


@pytest.fixture()
def pty_pair():
    master, slave = os.openpty()
    tty.setraw(slave)
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


def test_sender_reports_a_receiver_refusal(pty_pair, tmp_path: Path) -> None:
    master, name = pty_pair
    end = PtyEnd(master)
    rx = NascReceiver(end, tmp_path / "dest", max_bytes=10)

    def serve() -> None:
        with contextlib.suppress(Stopped):
            rx.serve(once=True)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    payload = tmp_path / "big.bin"
    payload.write_bytes(b"x" * 100)
    try:
        with open_port(name, 115200) as port, pytest.raises(TransferError, match=r"refused the file: big.bin is 100"):
            NascSender(port, SenderSettings(ack_timeout_s=0.2, stall_timeout_s=2.0), where=name).send(payload)
    finally:
        end.stop.set()
        thread.join(5)


def test_sender_gives_up_when_nobody_answers(pty_pair, tmp_path: Path) -> None:
    _master, name = pty_pair
    payload = tmp_path / "f.bin"
    payload.write_bytes(b"x" * 100)
    with open_port(name, 115200) as port, pytest.raises(TransferError, match="no receiver answered") as info:
        NascSender(port, SenderSettings(ack_timeout_s=0.1, stall_timeout_s=0.5), where=name).send(payload)
    assert "python -m nasc.firmware_bridge.receiver --port" in str(info.value)


def test_open_port_errors_name_the_port_and_the_fix(pty_pair, tmp_path: Path) -> None:
    _master, name = pty_pair
    with pytest.raises(TransferError, match=r"/dev/ttyNOPE0 does not exist.*serial.tools.list_ports"):
        open_port("/dev/ttyNOPE0", 115200)
    holder = serial.Serial(name, 115200, exclusive=True)
    try:
        with pytest.raises(TransferError, match=rf"serial port {name} is busy"):
            open_port(name, 115200)
    finally:
        holder.close()
    open_port(name, 115200).close()  # free again once the holder is gone
    with pytest.raises(TransferError, match="cannot open serial port"):
        open_port(name, -5)


def test_an_empty_file_is_received(tmp_path: Path) -> None:
    port = MemoryPort()
    rx = NascReceiver(port, tmp_path)
    rx.handle(_hello("empty.bin", b""))
    assert wire.READY.unpack(port.last().payload)[0] == 0
    rx.handle(Frame(Kind.END, 2, hashlib.sha256(b"").digest()))
    assert wire.DONE.unpack(port.last().payload)[0] == 0
    assert (tmp_path / "empty.bin").read_bytes() == b""


def test_an_unwritable_destination_aborts_with_the_reason(tmp_path: Path) -> None:
    blocker = tmp_path / "dest"
    blocker.write_text("a file where the folder should be")
    port = MemoryPort()
    NascReceiver(port, blocker).handle(_hello("f.bin", b"data"))
    assert port.last().kind == Kind.ABORT and f"cannot write in {blocker}".encode() in port.last().payload


def test_a_file_already_saved_is_not_sent_again_unless_it_is_gone(tmp_path: Path) -> None:
    port = MemoryPort()
    rx = NascReceiver(port, tmp_path)
    content = os.urandom(2000)
    rx.handle(_hello("f.bin", content))
    rx.handle(_data(2, 0, content))
    rx.handle(Frame(Kind.END, 3, hashlib.sha256(content).digest()))
    rx.handle(_hello("f.bin", content))  # the sender missed DONE and starts over
    assert wire.READY.unpack(port.last().payload)[0] == 2000
    rx.handle(Frame(Kind.END, 4, hashlib.sha256(content).digest()))
    assert port.last().kind == Kind.DONE and wire.DONE.unpack(port.last().payload)[0] == 0
    (tmp_path / "f.bin").unlink()  # deleted on the board: the same file must really come again
    rx.handle(_hello("f.bin", content))
    assert wire.READY.unpack(port.last().payload)[0] == 0

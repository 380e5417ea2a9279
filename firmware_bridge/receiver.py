"""The receiver that runs on the board: ``python -m nasc.firmware_bridge.receiver --port DEV --dest DIR``.

Depends on pyserial and the standard library only (install on a board with
``pip install --no-deps nasc pyserial``). Speaks the nasc protocol (docs/serial-protocol.md) or,
with ``--protocol ymodem``, receives a YMODEM batch (for example from lrzsz's ``sb --ymodem``).

Data goes to ``DIR/.NAME.part`` (its handshake in ``DIR/.NAME.part.json``), so a transfer cut off
by a broken link or a killed receiver resumes from the bytes already on disk; the whole-file sha256
is checked before the file is atomically renamed to ``DIR/NAME``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from nasc.errors import TransferError

from . import wire
from .files import install, safe_name_problem, sha256_file
from .wire import Frame, FrameError, FrameReader, Hello, Kind, NakReason, Port

DEFAULT_MAX_BYTES = 4 * 1024**3


def log(message: str) -> None:
    """One line on stderr, flushed (the receiver's only output)."""
    print(f"nasc-receiver: {message}", file=sys.stderr, flush=True)


@dataclass
class Session:
    """A transfer in progress."""

    hello: Hello
    part: Path
    meta: Path
    file: BinaryIO
    offset: int


class NascReceiver:
    """Receives files over the nasc protocol into `dest`."""

    def __init__(self, port: Port, dest: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.port = port
        self.dest = dest
        self.max_bytes = max_bytes
        self.reader = FrameReader()
        self.session: Session | None = None
        self.finished: dict[bytes, Path] = {}  # sha256 -> file saved: a repeated HELLO for it gets READY(size)
        self.done: dict[bytes, bytes] = {}  # sha256 -> DONE payload, for a sender that missed DONE
        self.saved: list[Path] = []
        self.nak_sent_for: int | None = None
        self.last_seq = 0  # seq of the latest valid frame (echoed by a NAK for a damaged one)

    def _send(self, kind: Kind, seq: int, payload: bytes = b"") -> None:
        self.port.write(Frame(kind, seq, payload).encode())

    def _nak(self, seq: int, reason: NakReason) -> None:
        offset = self.session.offset if self.session else 0
        self._send(Kind.NAK, seq, wire.NAK.pack(offset, reason))

    def serve(self, once: bool = False) -> list[Path]:
        """Handle frames until stopped (or, with `once`, until one file is saved)."""
        while True:
            data = self.port.read(max(1, self.port.in_waiting))
            for item in self.reader.feed(data):
                if isinstance(item, FrameError):
                    # A damaged frame: its kind and seq are unknown, so point the sender at what is needed next.
                    self._nak(self.last_seq, NakReason.BAD_FRAME)
                    self.nak_sent_for = self.session.offset if self.session else None
                    continue
                self.last_seq = item.seq
                self.handle(item)
                if once and self.saved:
                    return self.saved

    def handle(self, frame: Frame) -> None:
        """React to one valid frame."""
        try:
            if frame.kind == Kind.HELLO:
                self._hello(frame)
            elif frame.kind == Kind.DATA:
                self._data(frame)
            elif frame.kind == Kind.END:
                self._end(frame)
            elif frame.kind == Kind.ABORT:
                log(f"sender aborted: {frame.payload.decode(errors='replace')}")
                self._close()
        except OSError as exc:
            message = f"cannot write in {self.dest}: {exc}"
            log(message)
            self._send(Kind.ABORT, frame.seq, message.encode())
            self._close()

    def _hello(self, frame: Frame) -> None:
        try:
            hello = Hello.unpack(frame.payload)
        except FrameError:
            self._nak(frame.seq, NakReason.BAD_FRAME)
            return
        problem = safe_name_problem(hello.name)
        if hello.version != wire.PROTOCOL_VERSION:
            problem = f"protocol version {hello.version}, this receiver speaks {wire.PROTOCOL_VERSION}; update one side"
        elif hello.size_bytes > self.max_bytes:
            problem = f"{hello.name} is {hello.size_bytes} bytes, more than the receiver's --max-bytes {self.max_bytes}"
        if problem:
            log(f"refused: {problem}")
            self._send(Kind.ABORT, frame.seq, problem.encode())
            return
        chunk = min(hello.chunk_bytes, wire.MAX_PAYLOAD - wire.OFFSET.size)
        current = self.session
        if current and (current.hello.sha256, current.hello.size_bytes, current.hello.name) == (
            hello.sha256, hello.size_bytes, hello.name
        ):
            self._send(Kind.READY, frame.seq, wire.READY.pack(current.offset, chunk))
            return
        self._close()
        saved = self.finished.get(hello.sha256)
        if saved and saved.name == hello.name and saved.is_file() and sha256_file(saved) == hello.sha256.hex():
            self._send(Kind.READY, frame.seq, wire.READY.pack(hello.size_bytes, chunk))  # the sender missed DONE
            return
        self.session = self._open(hello)
        self.nak_sent_for = None
        self._send(Kind.READY, frame.seq, wire.READY.pack(self.session.offset, chunk))

    def _open(self, hello: Hello) -> Session:
        self.dest.mkdir(parents=True, exist_ok=True)
        part = self.dest / f".{hello.name}.part"
        meta = self.dest / f".{hello.name}.part.json"
        expected = {"name": hello.name, "size_bytes": hello.size_bytes, "sha256": hello.sha256.hex()}
        offset = 0
        try:
            resumable = json.loads(meta.read_text()) == expected and part.is_file()
        except (OSError, ValueError):
            resumable = False
        if resumable:
            offset = min(part.stat().st_size, hello.size_bytes)
            file = open(part, "r+b", buffering=0)  # noqa: SIM115 (kept open for the session)
            file.truncate(offset)
            log(f"receiving {hello.name} ({hello.size_bytes} bytes), resuming from offset {offset}")
        else:
            tmp = meta.with_suffix(".tmp")
            tmp.write_text(json.dumps(expected))
            os.replace(tmp, meta)
            file = open(part, "wb", buffering=0)  # noqa: SIM115
            log(f"receiving {hello.name} ({hello.size_bytes} bytes, sha256 {hello.sha256.hex()[:16]}) from offset 0")
        return Session(hello, part, meta, file, offset)

    def _close(self) -> None:
        if self.session:
            self.session.file.close()
            self.session = None

    def _data(self, frame: Frame) -> None:
        session = self.session
        if session is None:
            self._nak(frame.seq, NakReason.NO_SESSION)
            return
        if len(frame.payload) < wire.OFFSET.size:
            self._nak(frame.seq, NakReason.BAD_FRAME)
            return
        (offset,) = wire.OFFSET.unpack(frame.payload[: wire.OFFSET.size])
        data = frame.payload[wire.OFFSET.size :]
        if offset == session.offset and data and offset + len(data) <= session.hello.size_bytes:
            session.file.seek(offset)
            session.file.write(data)  # unbuffered: on disk (page cache) before the ACK goes out
            session.offset += len(data)
            self.nak_sent_for = None
            self._send(Kind.ACK, frame.seq, wire.OFFSET.pack(session.offset))
        elif offset < session.offset:  # a retransmission of data already here: the ACK was lost
            self._send(Kind.ACK, frame.seq, wire.OFFSET.pack(session.offset))
        elif self.nak_sent_for != session.offset:  # a gap: ask once for what is missing
            self.nak_sent_for = session.offset
            self._nak(frame.seq, NakReason.OUT_OF_ORDER)

    def _end(self, frame: Frame) -> None:
        sha = frame.payload[:32]
        if sha in self.done and (self.session is None or self.session.hello.sha256 != sha):
            self._send(Kind.DONE, frame.seq, self.done[sha])
            return
        session = self.session
        if session is None:
            self._nak(frame.seq, NakReason.NO_SESSION)
            return
        if session.offset < session.hello.size_bytes:
            self._nak(frame.seq, NakReason.INCOMPLETE)
            return
        session.file.close()
        digest = sha256_file(session.part)
        final = self.dest / session.hello.name
        if digest == session.hello.sha256.hex():
            install(session.part, final)
            session.meta.unlink(missing_ok=True)
            payload = wire.DONE.pack(0, bytes.fromhex(digest))
            self.saved.append(final)
            self.finished[session.hello.sha256] = final
            log(f"saved {final} ({session.hello.size_bytes} bytes, sha256 ok)")
        else:
            session.part.unlink(missing_ok=True)
            session.meta.unlink(missing_ok=True)
            payload = wire.DONE.pack(1, bytes.fromhex(digest))
            log(f"discarded {session.hello.name}: sha256 {digest[:16]} is not the announced one")
        self.session = None
        self.done[session.hello.sha256] = payload
        self._send(Kind.DONE, frame.seq, payload)


def main(argv: list[str] | None = None) -> int:
    """Command line of the receiver."""
    parser = argparse.ArgumentParser(
        prog="python -m nasc.firmware_bridge.receiver",
        description="Receive files sent by `nasc flash` (or a YMODEM sender) over a serial line into --dest.",
    )
    parser.add_argument("--port", required=True, help="serial device, for example /dev/ttyS0 or /dev/ttyGS0")
    parser.add_argument("--dest", default=".", help="folder the received files go to (default: .)")
    parser.add_argument("--baud", type=int, default=921600, help="line speed, the same as the sender's (921600)")
    parser.add_argument("--protocol", choices=("nasc", "ymodem"), default="nasc")
    parser.add_argument("--once", action="store_true", help="exit after one file (one batch for YMODEM)")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="refuse larger files")
    args = parser.parse_args(argv)
    from .port import open_port

    try:
        port = open_port(args.port, args.baud, timeout_s=0.05, write_timeout_s=None)
    except TransferError as exc:
        log(str(exc))
        return 12
    dest = Path(args.dest)
    with contextlib.closing(port):
        port.reset_input_buffer()
        log(f"listening on {args.port} ({args.protocol}), saving into {dest}")
        try:
            if args.protocol == "ymodem":
                from .ymodem import YmodemReceiver

                while True:
                    YmodemReceiver(port, dest, args.max_bytes, log).receive_batch()
                    if args.once:
                        return 0
            NascReceiver(port, dest, args.max_bytes).serve(once=args.once)
        except TransferError as exc:
            log(str(exc))
            return 12
        except (OSError, ValueError) as exc:  # pyserial's SerialException is an OSError
            log(f"{args.port}: {exc}; was the line disconnected?")
            return 12
        except KeyboardInterrupt:
            return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

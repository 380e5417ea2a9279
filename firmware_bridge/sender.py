"""The sending side of the nasc serial protocol: handshake, sliding window, retransmission, resume.

Go-back-N over a window of data frames: the receiver acknowledges cumulatively (the next offset it
needs); a NAK or a silent `ack_timeout_s` makes the sender resend from the last acknowledged
offset; after a few silent timeouts it sends HELLO again, and the receiver's READY says where to
resume (the bytes it already has on disk). No progress for `stall_timeout_s`: TransferError.
"""

from __future__ import annotations

import collections
import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import serial

from nasc.errors import TransferError

from . import wire
from .wire import Frame, FrameError, FrameReader, Hello, Kind, NakReason, Port

Progress = Callable[[int, int], None]  # (bytes acknowledged, total bytes)
TIMEOUTS_BEFORE_HELLO = 3


@dataclass(frozen=True)
class TransferResult:
    """What a transfer did."""

    name: str
    size_bytes: int
    sha256: str
    protocol: str
    elapsed_s: float
    resumed_from_bytes: int = 0  # the offset of the first READY (bytes the receiver already had)
    handshake_offsets: tuple[int, ...] = ()  # every READY's offset: a later one > 0 is a resume after a break
    handshakes: int = 1
    frames_sent: int = 0
    frames_resent: int = 0
    timeouts: int = 0
    naks: int = 0

    @property
    def bytes_per_s(self) -> float:
        """Payload throughput."""
        return self.size_bytes / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {**asdict(self), "bytes_per_s": self.bytes_per_s}


@dataclass(frozen=True)
class SenderSettings:
    """Timing and sizing of the nasc protocol (from [package] in build.toml)."""

    chunk_bytes: int = 1024
    window_frames: int = 8
    ack_timeout_s: float = 1.0
    stall_timeout_s: float = 30.0


class NascSender:
    """Sends one file to a NascReceiver over `port`."""

    def __init__(self, port: Port, settings: SenderSettings, progress: Progress | None = None, where: str = "") -> None:
        self.port = port
        self.settings = settings
        self.progress = progress or (lambda done, total: None)
        self.where = where or "the serial port"
        self.reader = FrameReader()
        self.pending: collections.deque[Frame] = collections.deque()
        self.seq = 0
        self.floor = 0  # responses to frames older than the current handshake are stale
        self.stats = collections.Counter[str]()
        self.handshake_offsets: list[int] = []
        self.chunk_bytes = settings.chunk_bytes  # lowered to the receiver's limit by READY

    # -- wire -------------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        try:
            self.port.write(data)
        except serial.SerialTimeoutException:
            self.stats["write_timeouts"] += 1  # the line is stuck; the frame counts as lost
        except (serial.SerialException, OSError) as exc:
            raise TransferError(f"{self.where}: write failed ({exc}); was the adapter unplugged?") from None

    def _send(self, kind: Kind, payload: bytes = b"") -> int:
        self.seq += 1
        self._write(Frame(kind, self.seq, payload).encode())
        self.stats["frames_sent"] += 1
        return self.seq

    def _receive(self, deadline: float) -> Frame | None:
        """The next valid, current response before `deadline`, or None."""
        while True:
            while self.pending:
                frame = self.pending.popleft()
                if frame.seq >= self.floor:
                    return frame
            if time.monotonic() >= deadline:
                return None
            try:
                data = self.port.read(max(1, self.port.in_waiting))
            except (serial.SerialException, OSError) as exc:
                raise TransferError(f"{self.where}: read failed ({exc}); was the adapter unplugged?") from None
            for item in self.reader.feed(data):
                if isinstance(item, FrameError):
                    self.stats["bad_responses"] += 1
                else:
                    self.pending.append(item)

    @staticmethod
    def _abort_text(frame: Frame) -> str:
        return frame.payload.decode(errors="replace")

    # -- conversation -----------------------------------------------------------------------------

    def _handshake(self, hello: Hello, give_up_at: float) -> int:
        """Send HELLO until READY; return the offset to resume from."""
        first = self.seq + 1
        while time.monotonic() < give_up_at:
            self._send(Kind.HELLO, hello.pack())
            deadline = time.monotonic() + self.settings.ack_timeout_s
            while (frame := self._receive(deadline)) is not None:
                if frame.kind == Kind.ABORT:
                    raise TransferError(f"{self.where}: the receiver refused the file: {self._abort_text(frame)}")
                if frame.kind == Kind.READY and frame.seq >= first and len(frame.payload) >= wire.READY.size:
                    offset, max_chunk = wire.READY.unpack(frame.payload[: wire.READY.size])
                    self.chunk_bytes = max(1, min(self.settings.chunk_bytes, max_chunk))
                    self.floor = frame.seq
                    self.stats["handshakes"] += 1
                    self.handshake_offsets.append(min(offset, hello.size_bytes))
                    return self.handshake_offsets[-1]
            self.stats["timeouts"] += 1
        raise TransferError(
            f"{self.where}: no receiver answered for {self.settings.stall_timeout_s:.0f} s; start it on the board "
            "with: python -m nasc.firmware_bridge.receiver --port DEVICE --dest DIR (same baud rate), "
            "or use --protocol ymodem for a bootloader"
        )

    def send(self, path: Path, name: str | None = None) -> TransferResult:
        """Send the file at `path` (as `name`); return when the receiver has saved it with a matching sha256."""
        with open(path, "rb") as file:
            digest = hashlib.file_digest(file, "sha256")
            hello = Hello(name or path.name, path.stat().st_size, digest.digest(), self.settings.chunk_bytes)
            start = time.monotonic()
            self._write(wire.DELIMITER)  # ends any partial frame the receiver holds
            for attempt in range(2):
                resumed, ok = self._transfer(hello, file)
                if ok:
                    break
                if attempt == 1:
                    raise TransferError(
                        f"{self.where}: {hello.name} arrived damaged twice (sha256 mismatch at the receiver); "
                        "check the line (lower --baud) and try again"
                    )
        return TransferResult(
            name=hello.name,
            size_bytes=hello.size_bytes,
            sha256=hello.sha256.hex(),
            protocol="nasc",
            elapsed_s=time.monotonic() - start,
            resumed_from_bytes=resumed,
            handshake_offsets=tuple(self.handshake_offsets),
            handshakes=self.stats["handshakes"],
            frames_sent=self.stats["frames_sent"],
            frames_resent=self.stats["frames_resent"],
            timeouts=self.stats["timeouts"],
            naks=self.stats["naks"],
        )

    def _transfer(self, hello: Hello, file: BinaryIO) -> tuple[int, bool]:
        """One attempt: handshake, data, END. Returns (first resume offset, receiver's sha256 matched)."""
        s = self.settings
        total = hello.size_bytes
        last_progress = time.monotonic()
        base = next_off = resumed = self._handshake(hello, last_progress + s.stall_timeout_s)
        self.progress(base, total)
        timeouts = 0
        rewound = (-1, 0.0)  # (offset, time) of the last go-back, to ignore duplicate NAKs for it
        end_sent = False
        while True:
            if time.monotonic() - last_progress > s.stall_timeout_s:
                raise TransferError(
                    f"{self.where}: no progress for {s.stall_timeout_s:.0f} s at byte {base} of {total}; "
                    "the link is down or the receiver stopped"
                )
            if base >= total:
                if not end_sent:
                    self._send(Kind.END, hello.sha256)
                    end_sent = True
            else:
                while next_off < total and next_off - base < self.chunk_bytes * s.window_frames:
                    file.seek(next_off)
                    chunk = file.read(min(self.chunk_bytes, total - next_off))
                    if not chunk:
                        raise TransferError(f"{file.name}: the file shrank while it was being sent")
                    self._send(Kind.DATA, wire.OFFSET.pack(next_off) + chunk)
                    next_off += len(chunk)
            frame = self._receive(time.monotonic() + s.ack_timeout_s)
            if frame is None:  # silence: resend from the last acknowledged byte (or END)
                timeouts += 1
                self.stats["timeouts"] += 1
                self.stats["frames_resent"] += -(-(next_off - base) // self.chunk_bytes) + int(end_sent)
                next_off = base
                end_sent = False
                if timeouts >= TIMEOUTS_BEFORE_HELLO:  # the receiver may have restarted: ask where it is
                    base = next_off = self._handshake(hello, last_progress + s.stall_timeout_s)
                    timeouts = 0
                continue
            if frame.kind == Kind.ABORT:
                raise TransferError(f"{self.where}: the receiver aborted: {self._abort_text(frame)}")
            if frame.kind == Kind.DONE and base >= total and len(frame.payload) >= wire.DONE.size:
                status, _ = wire.DONE.unpack(frame.payload[: wire.DONE.size])
                self.progress(total, total)
                return resumed, status == 0
            if frame.kind == Kind.ACK and len(frame.payload) >= wire.OFFSET.size:
                (acked,) = wire.OFFSET.unpack(frame.payload[: wire.OFFSET.size])
                if acked > base:
                    base = min(acked, total)
                    next_off = max(next_off, base)
                    last_progress = time.monotonic()
                    timeouts = 0
                    self.progress(base, total)
            elif frame.kind == Kind.NAK and len(frame.payload) >= wire.NAK.size:
                self.stats["naks"] += 1
                wanted, reason = wire.NAK.unpack(frame.payload[: wire.NAK.size])
                wanted = min(wanted, total)
                if reason == NakReason.NO_SESSION:  # the receiver restarted: handshake again
                    base = next_off = self._handshake(hello, last_progress + s.stall_timeout_s)
                    end_sent = False
                elif reason == NakReason.INCOMPLETE:  # END too early: the receiver says what it has
                    base = next_off = wanted
                    end_sent = False
                else:
                    if wanted > base:  # everything before `wanted` arrived
                        base = wanted
                        last_progress = time.monotonic()
                        self.progress(base, total)
                    now = time.monotonic()
                    if base <= wanted < next_off and (wanted != rewound[0] or now - rewound[1] > s.ack_timeout_s):
                        self.stats["frames_resent"] += -(-(next_off - wanted) // self.chunk_bytes)
                        next_off = wanted
                        rewound = (wanted, now)
                    if base >= total and reason == NakReason.BAD_FRAME:
                        end_sent = False  # the damaged frame may have been END

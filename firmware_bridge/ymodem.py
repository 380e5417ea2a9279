"""YMODEM batch transfer (CRC-16, 1024-byte blocks), as U-Boot's ``loady`` and lrzsz's ``rb``/``sb`` speak it.

Stdlib only; works on any port object with pyserial's ``read(n)`` (returning early on its timeout)
and ``write``. Block: ``SOH|STX, seq, 255-seq, 128|1024 data bytes, CRC-16/XMODEM (big-endian)``.
Block 0 carries ``name NUL size``; an all-zero block 0 ends the batch.
"""

from __future__ import annotations

import binascii
import os
import time
from collections.abc import Callable
from pathlib import Path

from nasc.errors import TransferError

from .files import install, safe_name_problem
from .wire import Port

END_OF_BATCH_GAP_S = 0.05
END_OF_BATCH_WAIT_S = 3.0
SOH, STX, EOT, ACK, NAK, CAN, CRC_MODE, CPMEOF = 0x01, 0x02, 0x04, 0x06, 0x15, 0x18, 0x43, 0x1A
BLOCK_SIZES = {SOH: 128, STX: 1024}
MAX_RETRIES = 10
Log = Callable[[str], None]
Progress = Callable[[int, int], None]


def crc16(data: bytes) -> int:
    """CRC-16/XMODEM (poly 0x1021, init 0)."""
    return binascii.crc_hqx(data, 0)


def make_block(seq: int, data: bytes, size: int) -> bytes:
    """One YMODEM block: header, sequence, its complement, padded data, CRC."""
    padded = data.ljust(size, b"\x00" if seq == 0 else bytes([CPMEOF]))
    header = STX if size == 1024 else SOH
    return bytes([header, seq & 0xFF, 0xFF - (seq & 0xFF)]) + padded + crc16(padded).to_bytes(2, "big")


class _Line:
    """Timed reads on a pyserial-like port."""

    def __init__(self, port: Port, where: str) -> None:
        self.port = port
        self.where = where

    def read_byte(self, timeout_s: float) -> int | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            data = self.port.read(1)
            if data:
                return data[0]
        return None

    def read_exact(self, n: int, timeout_s: float) -> bytes | None:
        deadline = time.monotonic() + timeout_s
        out = bytearray()
        while len(out) < n and time.monotonic() < deadline:
            out += self.port.read(n - len(out))
        return bytes(out) if len(out) == n else None

    def purge(self, quiet_s: float = 0.2) -> None:
        """Drop input until the line has been quiet for `quiet_s` (after a damaged block)."""
        deadline = time.monotonic() + 5.0
        last = time.monotonic()
        while time.monotonic() - last < quiet_s and time.monotonic() < deadline:
            if self.port.read(256):
                last = time.monotonic()

    def write(self, data: bytes) -> None:
        self.port.write(data)

    def cancel(self) -> None:
        self.port.write(bytes([CAN] * 5) + b"\b" * 5)


class YmodemSender:
    """Sends one file as a YMODEM batch to a waiting receiver (rb --ymodem, U-Boot loady)."""

    def __init__(self, port: Port, where: str = "the serial port", progress: Progress | None = None,
                 start_timeout_s: float = 60.0, block_timeout_s: float = 10.0, block_gap_s: float = 0.002) -> None:
        self.block_gap_s = block_gap_s
        self.line = _Line(port, where)
        self.where = where
        self.progress = progress or (lambda done, total: None)
        self.start_timeout_s = start_timeout_s
        self.block_timeout_s = block_timeout_s
        self.resent = 0

    def _wait_for(self, wanted: set[int], timeout_s: float, what: str) -> int:
        deadline = time.monotonic() + timeout_s
        cancels = 0
        while time.monotonic() < deadline:
            byte = self.line.read_byte(deadline - time.monotonic())
            if byte == CAN:
                cancels += 1
                if cancels >= 2:
                    raise TransferError(f"{self.where}: the YMODEM receiver cancelled the transfer")
                continue
            if byte in wanted:
                return byte
        raise TransferError(f"{self.where}: no {what} from the YMODEM receiver within {timeout_s:.0f} s; "
                            "start it first (U-Boot: loady; Linux: rb --ymodem)")

    def _send_block(self, block: bytes, what: str) -> None:
        for attempt in range(MAX_RETRIES):
            # Receivers such as lrzsz's rb flush their input right after sending ACK: a block that
            # arrives within that instant is lost and costs the receiver's timeout (seconds). Wait a beat.
            time.sleep(self.block_gap_s)
            self.line.write(block)
            try:
                reply = self._wait_for({ACK, NAK}, self.block_timeout_s, f"answer to {what}")
            except TransferError:
                if attempt == MAX_RETRIES - 1:
                    raise
                reply = NAK
            if reply == ACK:
                return
            self.resent += 1
        self.line.cancel()
        raise TransferError(f"{self.where}: {what} refused {MAX_RETRIES} times; check the baud rate and cable")

    def send(self, path: Path, name: str | None = None) -> int:
        """Send `path`; return how many blocks had to be resent."""
        name = name or path.name
        size = path.stat().st_size
        header = name.encode() + b"\x00" + f"{size} {int(path.stat().st_mtime):o} 100644".encode()
        if len(header) > 1024:
            raise TransferError(f"file name {name!r} is too long for a YMODEM header")
        self._wait_for({CRC_MODE}, self.start_timeout_s, "'C' (CRC mode request)")
        header_block = make_block(0, header, 128 if len(header) <= 128 else 1024)
        for attempt in range(MAX_RETRIES):  # the header, until the receiver asks for data with 'C'
            self._send_block(header_block, "the file header")
            try:
                self._wait_for({CRC_MODE}, self.block_timeout_s, "'C' after the header")
                break
            except TransferError:
                if attempt == MAX_RETRIES - 1:
                    raise
                self.resent += 1
        sent = 0
        seq = 1
        self.progress(0, size)
        with open(path, "rb") as f:
            while chunk := f.read(1024):
                size_code = 128 if len(chunk) <= 128 else 1024
                self._send_block(make_block(seq, chunk, size_code), f"block {seq}")
                sent += len(chunk)
                seq += 1
                self.progress(sent, size)
        for _ in range(MAX_RETRIES):  # EOT: receivers NAK the first one, then ACK
            self.line.write(bytes([EOT]))
            try:
                if self._wait_for({ACK, NAK}, self.block_timeout_s, "answer to EOT") == ACK:
                    break
            except TransferError:
                continue
        else:
            raise TransferError(f"{self.where}: the YMODEM receiver never acknowledged the end of file")
        # The file is complete once EOT is acknowledged. Close the batch with an empty header; some
        # receivers (lrzsz's rb) exit on it without acknowledging, so its ACK is not awaited for long.
        try:
            self._wait_for({CRC_MODE}, self.block_timeout_s, "'C' for the next file")
            for _ in range(MAX_RETRIES):
                # rb flushes its input just after answering; an end-of-batch block sent at once is lost
                # and rb would wait for it forever: pause as before data blocks, and resend on 'C'/NAK.
                time.sleep(max(self.block_gap_s, END_OF_BATCH_GAP_S))
                self.line.write(make_block(0, b"", 128))
                if self._wait_for({ACK, CRC_MODE, NAK}, END_OF_BATCH_WAIT_S, "end-of-batch answer") == ACK:
                    break
        except TransferError:
            pass  # silence: the receiver took the empty header and exited
        return self.resent


class YmodemReceiver:
    """Receives one YMODEM batch into `dest` (each file via a .part file renamed into place)."""

    def __init__(self, port: Port, dest: Path, max_bytes: int, log: Log, where: str = "the serial port",
                 start_timeout_s: float | None = None, block_timeout_s: float = 2.0) -> None:
        self.block_timeout_s = block_timeout_s  # a block's bytes must all arrive within this
        self.line = _Line(port, where)
        self.dest = dest
        self.max_bytes = max_bytes
        self.log = log
        self.where = where
        self.start_timeout_s = start_timeout_s

    def _read_block(self, first: int) -> tuple[int, bytes] | None:
        """The rest of a block whose header byte was `first`; None when damaged (caller NAKs)."""
        size = BLOCK_SIZES[first]
        rest = self.line.read_exact(2 + size + 2, self.block_timeout_s)
        if rest is None or rest[0] != 0xFF - rest[1]:
            return None
        data = rest[2 : 2 + size]
        if crc16(data) != int.from_bytes(rest[2 + size :], "big"):
            return None
        return rest[0], data

    def _fail(self, message: str) -> TransferError:
        self.line.cancel()
        return TransferError(f"{self.where}: {message}")

    def _next_block(self, timeout_s: float, poke: int | None, expect_eot: bool) -> tuple[int, bytes] | str:
        """Read blocks (NAKing damaged ones) until a good one, EOT ('eot') or cancel; poke = byte to send on silence."""
        errors = 0
        deadline = None if timeout_s <= 0 else time.monotonic() + timeout_s
        while deadline is None or time.monotonic() < deadline:
            byte = self.line.read_byte(1.0 if poke is not None else 3.0)
            if byte is None:
                if poke is not None:
                    self.line.write(bytes([poke]))
                continue
            if byte in BLOCK_SIZES:
                block = self._read_block(byte)
                if block is not None:
                    return block
            elif byte == EOT and expect_eot:
                return "eot"
            elif byte == EOT:  # the sender missed our ACK of its last EOT and sends it again
                self.line.write(bytes([ACK]))
                continue
            elif byte == CAN:
                if self.line.read_byte(1.0) == CAN:
                    raise TransferError(f"{self.where}: the YMODEM sender cancelled the transfer")
                continue
            else:
                continue  # line noise between blocks
            errors += 1
            if errors > MAX_RETRIES:
                raise self._fail("too many damaged YMODEM blocks; check the baud rate and cable")
            self.line.purge()
            self.line.write(bytes([NAK]))
        raise self._fail("the YMODEM sender went silent")

    def receive_batch(self) -> list[Path]:
        """Receive files until the sender's empty header block; return the saved paths."""
        saved = []
        self.dest.mkdir(parents=True, exist_ok=True)
        while True:
            self.line.write(bytes([CRC_MODE]))
            block = self._next_block(self.start_timeout_s or 0, CRC_MODE, expect_eot=False)
            assert not isinstance(block, str)
            seq, data = block
            if seq != 0:
                raise self._fail(f"expected the YMODEM header block, got block {seq}")
            name_raw, _, info = data.partition(b"\x00")
            if not name_raw:
                self.line.write(bytes([ACK]))
                return saved
            saved.append(self._receive_file(name_raw, info))

    def _receive_file(self, name_raw: bytes, info: bytes) -> Path:
        name = os.path.basename(name_raw.decode(errors="replace"))
        problem = safe_name_problem(name)
        if problem:
            raise self._fail(problem)
        fields = info.split(b"\x00")[0].split()
        size = int(fields[0]) if fields and fields[0].isdigit() else None
        if size is not None and size > self.max_bytes:
            raise self._fail(f"{name} is {size} bytes, more than --max-bytes {self.max_bytes}")
        self.log(f"receiving {name} ({size if size is not None else 'unknown'} bytes) over YMODEM")
        part = self.dest / f".{name}.ymodem.part"
        received = 0
        expected = 1
        eots = 0
        with open(part, "wb") as out:
            self.line.write(bytes([ACK, CRC_MODE]))
            while True:
                block = self._next_block(60.0, None, expect_eot=True)
                if block == "eot":
                    eots += 1
                    if eots == 1:  # NAK the first EOT (it may be line noise), ACK the second
                        self.line.write(bytes([NAK]))
                        continue
                    self.line.write(bytes([ACK]))
                    break
                eots = 0
                seq, data = block
                if seq == (expected - 1) & 0xFF:  # our ACK was lost: the same block again
                    self.line.write(bytes([ACK, CRC_MODE]) if expected == 1 else bytes([ACK]))
                    continue
                if seq != expected & 0xFF:
                    raise self._fail(f"YMODEM block {seq} arrived where {expected & 0xFF} was due; out of sync")
                if size is not None:
                    data = data[: max(0, size - received)]
                out.write(data)
                received += len(data)
                if received > self.max_bytes:
                    raise self._fail(f"{name} grew past --max-bytes {self.max_bytes}")
                expected += 1
                self.line.write(bytes([ACK]))
        if size is None:  # no size in the header: drop the padding
            with open(part, "r+b") as f:
                content = f.read().rstrip(bytes([CPMEOF]))
                f.seek(0)
                f.truncate()
                f.write(content)
        elif received != size:
            part.unlink(missing_ok=True)
            raise TransferError(f"{self.where}: {name}: {received} bytes arrived, the header announced {size}")
        final = self.dest / name
        install(part, final)
        self.log(f"saved {final} ({final.stat().st_size} bytes)")
        return final

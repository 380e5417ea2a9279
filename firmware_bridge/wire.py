"""The nasc serial protocol's frames: COBS framing, header, CRC32 and message payloads. Stdlib only.

A frame on the wire is ``COBS(kind u8 | seq u32 | length u16 | payload | crc32 u32) 0x00``,
all integers little-endian, the CRC32 (zlib's, IEEE 802.3) over everything before it.
See docs/serial-protocol.md for the conversation built from these frames.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

PROTOCOL_VERSION = 1
DELIMITER = b"\x00"
HEADER = struct.Struct("<BIH")  # kind, seq, payload length
CRC = struct.Struct("<I")
MAX_PAYLOAD = 8192 + 64  # the largest data chunk plus its offset field, with room to spare
MAX_ENCODED = HEADER.size + MAX_PAYLOAD + CRC.size + (HEADER.size + MAX_PAYLOAD + CRC.size) // 254 + 2


class Kind(IntEnum):
    """Frame kinds. Sender -> receiver: HELLO, DATA, END. Receiver -> sender: READY, ACK, NAK, DONE. Both: ABORT."""

    HELLO = 1
    READY = 2
    DATA = 3
    ACK = 4
    NAK = 5
    END = 6
    DONE = 7
    ABORT = 8


class NakReason(IntEnum):
    """Why the receiver refused a frame."""

    BAD_FRAME = 1  # CRC, COBS or length check failed: the frame was damaged
    OUT_OF_ORDER = 2  # data at an offset other than the next expected one (a frame was lost)
    NO_SESSION = 3  # data or END without a handshake (the receiver restarted): send HELLO again
    INCOMPLETE = 4  # END before all bytes arrived


class FrameError(ValueError):
    """A damaged frame: bad COBS, wrong length, or CRC mismatch."""


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: `data` with no zero bytes (one byte overhead per 254)."""
    out = bytearray()
    block = bytearray()
    for byte in data:
        if byte == 0:
            out.append(len(block) + 1)
            out += block
            block.clear()
        else:
            block.append(byte)
            if len(block) == 254:
                out.append(255)
                out += block
                block.clear()
    out.append(len(block) + 1)
    out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of cobs_encode; FrameError for anything cobs_encode cannot have produced."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise FrameError("zero byte inside a COBS block")
        end = i + code
        if end > n:
            raise FrameError("COBS block runs past the end of the frame")
        block = data[i + 1 : end]
        if 0 in block:
            raise FrameError("zero byte inside a COBS block")
        out += block
        i = end
        if code != 255 and i < n:
            out.append(0)
    if n == 0:
        raise FrameError("empty frame")
    return bytes(out)


@dataclass(frozen=True)
class Frame:
    """One decoded frame."""

    kind: int
    seq: int
    payload: bytes = b""

    def encode(self) -> bytes:
        """Wire bytes, delimiter included."""
        if len(self.payload) > MAX_PAYLOAD:
            raise ValueError(f"payload of {len(self.payload)} bytes exceeds {MAX_PAYLOAD}")
        body = HEADER.pack(self.kind, self.seq & 0xFFFFFFFF, len(self.payload)) + self.payload
        return cobs_encode(body + CRC.pack(zlib.crc32(body))) + DELIMITER

    @classmethod
    def decode(cls, encoded: bytes) -> Frame:
        """Parse the bytes between two delimiters (without them); FrameError when damaged."""
        raw = cobs_decode(encoded)
        if len(raw) < HEADER.size + CRC.size:
            raise FrameError(f"frame of {len(raw)} bytes is shorter than a header and CRC")
        body, (crc,) = raw[: -CRC.size], CRC.unpack(raw[-CRC.size :])
        if zlib.crc32(body) != crc:
            raise FrameError("CRC32 mismatch")
        kind, seq, length = HEADER.unpack(body[: HEADER.size])
        payload = body[HEADER.size :]
        if len(payload) != length:
            raise FrameError(f"length field says {length}, payload has {len(payload)} bytes")
        return cls(kind, seq, payload)


class FrameReader:
    """Splits a byte stream at delimiters; yields Frames and FrameErrors (never raises)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._overflow = False

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        """Add received bytes; return every complete frame (or the error that damaged it)."""
        results: list[Frame | FrameError] = []
        *complete, tail = data.split(DELIMITER)
        for piece in complete:
            self._buffer += piece
            if self._overflow:
                results.append(FrameError("frame longer than any valid frame"))
            elif self._buffer:  # empty: two delimiters in a row, used to resynchronise
                try:
                    results.append(Frame.decode(bytes(self._buffer)))
                except FrameError as exc:
                    results.append(exc)
            self._buffer.clear()
            self._overflow = False
        self._buffer += tail
        if len(self._buffer) > MAX_ENCODED:
            self._buffer.clear()
            self._overflow = True
        return results


class Port(Protocol):
    """What the protocol needs of a pyserial port: read(n) that returns early on its timeout, write."""

    def read(self, size: int = 1) -> bytes: ...
    def write(self, data: bytes) -> int | None: ...
    @property
    def in_waiting(self) -> int: ...


# Message payloads -------------------------------------------------------------------------------

HELLO = struct.Struct("<BHQ32s")  # protocol version, chunk bytes, total size, sha256; then the UTF-8 name
READY = struct.Struct("<QH")  # offset to resume from, largest chunk the receiver takes
OFFSET = struct.Struct("<Q")  # DATA (then the bytes) and ACK
NAK = struct.Struct("<QB")  # next expected offset, NakReason
DONE = struct.Struct("<B32s")  # 0 = saved, 1 = sha256 mismatch (discarded); the sha256 the receiver computed


@dataclass(frozen=True)
class Hello:
    """The handshake: what is coming."""

    name: str
    size_bytes: int
    sha256: bytes
    chunk_bytes: int
    version: int = PROTOCOL_VERSION

    def pack(self) -> bytes:
        """Payload bytes."""
        return HELLO.pack(self.version, self.chunk_bytes, self.size_bytes, self.sha256) + self.name.encode()

    @classmethod
    def unpack(cls, payload: bytes) -> Hello:
        """Parse a HELLO payload (FrameError when malformed)."""
        if len(payload) < HELLO.size:
            raise FrameError("HELLO payload too short")
        version, chunk, size, sha = HELLO.unpack(payload[: HELLO.size])
        try:
            name = payload[HELLO.size :].decode()
        except UnicodeDecodeError:
            raise FrameError("HELLO file name is not UTF-8") from None
        return cls(name, size, sha, chunk, version)

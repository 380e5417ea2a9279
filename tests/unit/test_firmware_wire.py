"""Serial framing: COBS and frame round trips (hypothesis), CRC rejects damage, stream resynchronisation."""

from __future__ import annotations

import random
import subprocess
import sys
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nasc.firmware_bridge import wire
from nasc.firmware_bridge.wire import Frame, FrameError, FrameReader, Hello, Kind, cobs_decode, cobs_encode
from nasc.firmware_bridge.ymodem import crc16, make_block

frames = st.builds(
    Frame,
    kind=st.sampled_from(list(Kind)),
    seq=st.integers(0, 2**32 - 1),
    payload=st.binary(max_size=wire.MAX_PAYLOAD),
)


@given(st.binary(max_size=3000))
@settings(deadline=None)
def test_cobs_round_trips_and_removes_zeros(data: bytes) -> None:
    encoded = cobs_encode(data)
    assert 0 not in encoded
    assert len(encoded) <= len(data) + len(data) // 254 + 2
    assert cobs_decode(encoded) == data


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x00", b"\x01" * 254, b"\x01" * 255, b"\x01" * 253 + b"\x00"])
def test_cobs_edge_cases(data: bytes) -> None:
    assert cobs_decode(cobs_encode(data)) == data


@given(frames)
@settings(max_examples=200, deadline=None)
def test_frame_round_trips(frame: Frame) -> None:
    encoded = frame.encode()
    assert encoded.endswith(b"\x00") and encoded.count(0) == 1
    assert Frame.decode(encoded[:-1]) == frame


@given(frames, st.data())
@settings(max_examples=300, deadline=None)
def test_crc_rejects_any_corruption(frame: Frame, data: st.DataObject) -> None:
    body = bytearray(cobs_decode(frame.encode()[:-1]))
    index = data.draw(st.integers(0, len(body) - 1))
    flip = data.draw(st.integers(1, 255))
    body[index] ^= flip
    with pytest.raises(FrameError):
        Frame.decode(cobs_encode(bytes(body)))


def test_crc_field_is_zlib_crc32_over_header_and_payload() -> None:
    frame = Frame(Kind.DATA, 7, b"hello")
    body = cobs_decode(frame.encode()[:-1])
    assert body[:7] == bytes([Kind.DATA]) + (7).to_bytes(4, "little") + (5).to_bytes(2, "little")
    assert int.from_bytes(body[-4:], "little") == zlib.crc32(body[:-4])


def test_length_field_mismatch_is_rejected() -> None:
    body = wire.HEADER.pack(Kind.DATA, 1, 4) + b"abc"  # claims 4 bytes, has 3
    raw = body + wire.CRC.pack(zlib.crc32(body))
    with pytest.raises(FrameError, match="length field"):
        Frame.decode(cobs_encode(raw))


@given(st.lists(frames, min_size=1, max_size=8), st.lists(st.integers(1, 400), min_size=1, max_size=50))
@settings(max_examples=100, deadline=None)
def test_reader_reassembles_frames_split_anywhere(sent: list[Frame], cuts: list[int]) -> None:
    stream = b"".join(f.encode() for f in sent)
    reader = FrameReader()
    got: list[Frame | FrameError] = []
    position = 0
    for cut in cuts * (len(stream) // max(1, sum(cuts)) + 1):
        got += reader.feed(stream[position : position + cut])
        position += cut
        if position >= len(stream):
            break
    got += reader.feed(stream[position:])
    assert got == sent


def test_reader_resynchronises_after_noise_and_overflow() -> None:
    good = [Frame(Kind.ACK, i, wire.OFFSET.pack(i * 100)) for i in range(3)]
    noise = bytes(random.Random(1).randrange(1, 256) for _ in range(50))
    junk = b"\x07" * (wire.MAX_ENCODED + 10)
    reader = FrameReader()
    out = reader.feed(good[0].encode() + noise + b"\x00" + good[1].encode() + junk + b"\x00" + good[2].encode())
    assert [x for x in out if isinstance(x, Frame)] == good
    assert sum(isinstance(x, FrameError) for x in out) == 2
    assert reader.feed(b"\x00\x00") == []  # empty frames (resync delimiters) are ignored


def test_hello_round_trips_and_rejects_short_payloads() -> None:
    hello = Hello("model-rpi4.tar.gz", 123456, bytes(range(32)), 1024)
    assert Hello.unpack(hello.pack()) == hello
    with pytest.raises(FrameError):
        Hello.unpack(hello.pack()[:10])


def test_ymodem_crc16_and_block_layout() -> None:
    assert crc16(b"123456789") == 0x31C3  # CRC-16/XMODEM check value
    block = make_block(1, b"abc", 1024)
    assert block[:3] == bytes([0x02, 0x01, 0xFE]) and len(block) == 3 + 1024 + 2
    assert block[3:6] == b"abc" and block[6] == 0x1A  # data padded with CPMEOF
    assert int.from_bytes(block[-2:], "big") == crc16(block[3:-2])
    header = make_block(0, b"f.bin\x0012", 128)
    assert header[:3] == bytes([0x01, 0x00, 0xFF]) and header[3 + 9] == 0  # header padded with zeros


def test_receiver_imports_only_pyserial_and_the_standard_library() -> None:
    code = (
        "import sys; import nasc.firmware_bridge.receiver, nasc.firmware_bridge.ymodem, nasc.firmware_bridge.port;"
        "print('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    names = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    foreign = [n for n in names if n not in sys.stdlib_module_names and n not in ("serial", "nasc")
               and not n.startswith("_")]
    assert foreign == [], f"the receiver pulls in {foreign}; it must need only pyserial and the stdlib"
    assert "serial" in names
    leaked = subprocess.run(
        [sys.executable, "-c", "import sys, nasc.firmware_bridge.receiver; "
         "print([m for m in sys.modules if m.startswith('nasc.') and m not in ("
         "'nasc.errors', 'nasc.firmware_bridge', 'nasc.firmware_bridge.receiver', 'nasc.firmware_bridge.wire',"
         "'nasc.firmware_bridge.files')])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert leaked == "[]"


def test_firmware_bridge_imports_neither_torch_nor_tvm() -> None:
    modules = ["bundle", "flash", "header", "manifest", "package", "port", "receiver", "sample", "sender", "ymodem"]
    code = (
        "import sys, importlib; "
        + "; ".join(f"importlib.import_module('nasc.firmware_bridge.{m}')" for m in modules)
        + "; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tvm', 'tvm_ffi')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"

"""DeviceSession bookkeeping (a recording stand-in for tvm.rpc.RPCSession: logic only)."""

from __future__ import annotations

from pathlib import Path

from nasc.devices.registry import resolve_device
from nasc.devices.rpc import DeviceSession, Watchdog, shutdown_connections


class _Remote:
    def __init__(self) -> None:
        self.uploads: list[str] = []
        self.loads: list[str] = []

    def upload(self, path: str, target: str) -> None:
        self.uploads.append(target)

    def load_module(self, name: str) -> object:
        self.loads.append(name)
        return object()

    def cpu(self, index: int) -> str:
        return f"remote-cpu{index}"


def test_a_library_is_uploaded_once_per_session(tmp_path: Path) -> None:
    lib = tmp_path / "block.so"
    lib.write_bytes(b"\x7fELF one")
    other = tmp_path / "other.so"
    other.write_bytes(b"\x7fELF two")
    remote = _Remote()
    session = DeviceSession(remote, "somewhere", resolve_device("local"))
    first = session.load_library(lib)
    assert session.load_library(lib) is first
    session.load_library(other)
    assert len(remote.uploads) == 2 and remote.uploads[0].endswith("-block.so")
    assert session.dev == "remote-cpu0"


def test_watchdog_fires_only_after_its_time() -> None:
    import socket
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    with Watchdog(0.3) as dog:
        dog.target = ("127.0.0.1", port)
        client.settimeout(5)
        start = time.monotonic()
        assert client.recv(1) == b""  # unblocked by the shutdown, not by the 5 s timeout
        assert 0.25 < time.monotonic() - start < 4 and dog.fired
    assert shutdown_connections("127.0.0.1", port) == 1  # the socket is still open (only shut down)
    for s in (client, conn, server):
        s.close()

"""TVM RPC tracker client with timeouts: queue summaries and session requests that never hang forever.

Speaks the stock tracker protocol (``tvm.rpc.base``); servers are the stock ``tvm.exec.rpc_server``.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

from nasc.errors import DeviceUnreachable


def server_hint(tracker: str, key: str) -> str:
    """The command that puts a server under `key` (for error messages)."""
    return f"python -m tvm.exec.rpc_server --host 127.0.0.1 --tracker {tracker} --key {key}"


def tracker_hint(host: str, port: int) -> str:
    """The command that starts a tracker (for error messages)."""
    return f"python -m tvm.exec.rpc_tracker --host {host} --port {port}"


@dataclass(frozen=True)
class KeyStatus:
    """One key of a tracker's queue."""

    key: str
    servers: int
    free: int
    pending: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"key": self.key, "servers": self.servers, "free": self.free, "pending": self.pending}


@dataclass(frozen=True)
class TrackerSummary:
    """What a tracker knows: its keys with server/free/pending counts and the servers' addresses."""

    address: str
    keys: tuple[KeyStatus, ...]
    servers: tuple[tuple[str, str], ...]  # (key, host:port)

    def key(self, key: str) -> KeyStatus:
        """The status of `key` (zeros when the tracker has never seen it)."""
        return next((k for k in self.keys if k.key == key), KeyStatus(key, 0, 0, 0))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"address": self.address, "keys": [k.to_dict() for k in self.keys],
                "servers": [{"key": k, "address": a} for k, a in self.servers]}


def _tvm_base() -> Any:
    from tvm.rpc import base

    return base


def _open_tracker_socket(host: str, port: int, timeout_s: float) -> socket.socket:
    base = _tvm_base()
    where = f"{host}:{port}"
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except OSError as exc:
        raise DeviceUnreachable(
            f"no RPC tracker at {where} ({exc.strerror or exc}); start one with `{tracker_hint(host, port)}` "
            "or fix the tracker address"
        ) from None
    try:
        sock.sendall(struct.pack("<i", base.RPC_TRACKER_MAGIC))
        magic = struct.unpack("<i", base.recvall(sock, 4))[0]
    except (OSError, RuntimeError) as exc:
        sock.close()
        raise DeviceUnreachable(f"{where} did not answer as an RPC tracker ({exc})") from None
    if magic != base.RPC_TRACKER_MAGIC:
        sock.close()
        raise DeviceUnreachable(f"{where} is not an RPC tracker (is it an RPC server? use rpc://{where})")
    return sock


def tracker_summary(host: str, port: int, timeout_s: float = 5.0) -> TrackerSummary:
    """Ask a tracker for its queue (like ``query_rpc_tracker``, as data)."""
    base = _tvm_base()
    sock = _open_tracker_socket(host, port, timeout_s)
    try:
        base.sendjson(sock, [base.TrackerCode.SUMMARY])
        value = base.recvjson(sock)
    except (OSError, RuntimeError) as exc:
        raise DeviceUnreachable(f"RPC tracker {host}:{port} dropped the summary request ({exc})") from None
    finally:
        sock.close()
    if value[0] != base.TrackerCode.SUCCESS:
        raise DeviceUnreachable(f"RPC tracker {host}:{port} refused the summary request: {value!r}")
    data = value[1]
    servers: list[tuple[str, str]] = []
    counts: dict[str, int] = {}
    for item in data.get("server_info", []):
        key = str(item.get("key", "")).partition(":")[2]  # "server:KEY" -> "KEY"
        addr = item.get("addr") or ["?", "?"]
        servers.append((key, f"{addr[0]}:{addr[1]}"))
        counts[key] = counts.get(key, 0) + 1
    keys = []
    queue = data.get("queue_info", {})
    for key in sorted(set(queue) | set(counts)):
        q = queue.get(key, {})
        keys.append(KeyStatus(key, counts.get(key, 0), int(q.get("free", 0)), int(q.get("pending", 0))))
    return TrackerSummary(f"{host}:{port}", tuple(keys), tuple(sorted(servers)))


def wait_for_servers(host: str, port: int, key: str, count: int, timeout_s: float = 60.0) -> TrackerSummary:
    """Block until `count` servers are registered (and free) under `key`."""
    deadline = time.monotonic() + timeout_s
    while True:
        summary = tracker_summary(host, port)
        if summary.key(key).free >= count:
            return summary
        if time.monotonic() > deadline:
            raise DeviceUnreachable(
                f"RPC tracker {host}:{port} key '{key}': {summary.key(key).free} free server(s) after "
                f"{timeout_s:.0f} s, expected {count}; start one with `{server_hint(f'{host}:{port}', key)}`"
            )
        time.sleep(0.2)


def request_server(host: str, port: int, key: str, timeout_s: float) -> tuple[str, int, str]:
    """Ask the tracker for a free server under `key`: (host, port, matchkey); waits at most `timeout_s`."""
    base = _tvm_base()
    where = f"{host}:{port}"
    sock = _open_tracker_socket(host, port, min(timeout_s, 10.0))
    try:
        sock.settimeout(timeout_s)
        base.sendjson(sock, [base.TrackerCode.REQUEST, key, "", 1])
        value = base.recvjson(sock)
    except TimeoutError:
        status = ""
        with contextlib.suppress(DeviceUnreachable):
            status = f" (now: {tracker_summary(host, port).key(key).servers} server(s) registered under it)"
        raise DeviceUnreachable(
            f"RPC tracker {where} key '{key}': no server became free within {timeout_s:.0f} s{status}; "
            f"start one on the device with `{server_hint(where, key)}`"
        ) from None
    except (OSError, RuntimeError) as exc:
        raise DeviceUnreachable(f"RPC tracker {where} dropped the request for key '{key}' ({exc})") from None
    finally:
        sock.close()
    if value[0] != base.TrackerCode.SUCCESS:
        raise DeviceUnreachable(f"RPC tracker {where} refused the request for key '{key}': {value!r}")
    server_host, server_port, matchkey = value[1]
    return str(server_host), int(server_port), str(matchkey)

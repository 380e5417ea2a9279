"""`nasc flash`: verify a bundle, then send it over a serial line (nasc protocol or YMODEM)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from nasc.fsutil import sha256_file as file_sha256

from .bundle import verify_bundle
from .port import open_port
from .sender import NascSender, Progress, SenderSettings, TransferResult
from .settings import PackageSettings, Protocol
from .ymodem import YmodemSender


def sender_settings(settings: PackageSettings) -> SenderSettings:
    """The nasc protocol's timing from [package]."""
    return SenderSettings(settings.chunk_bytes, settings.window_frames, settings.ack_timeout_s,
                          settings.stall_timeout_s)


def send_file(path: Path, port_name: str, baud: int, protocol: Protocol, settings: PackageSettings,
              progress: Progress | None = None, name: str | None = None) -> TransferResult:
    """Send one file over `port_name` with `protocol`; raises TransferError with the reason and the fix."""
    where = f"serial port {port_name}"
    with contextlib.closing(open_port(port_name, baud)) as port:
        if protocol == "ymodem":
            start = time.monotonic()
            sender = YmodemSender(port, where, progress)
            resent = sender.send(path, name)
            size = path.stat().st_size
            return TransferResult(name or path.name, size, file_sha256(path), "ymodem", time.monotonic() - start,
                                  frames_resent=resent)
        return NascSender(port, sender_settings(settings), progress, where).send(path, name)


def flash(bundle: Path, port_name: str, baud: int | None = None, protocol: Protocol | None = None,
          settings: PackageSettings | None = None, progress: Progress | None = None) -> TransferResult:
    """Verify `bundle` (refusing a corrupt one), then send it to the board's receiver."""
    settings = settings or PackageSettings()
    verify_bundle(bundle, int(settings.max_member_mb * 1024 * 1024))
    return send_file(bundle, port_name, baud or settings.baud, protocol or settings.protocol, settings, progress)

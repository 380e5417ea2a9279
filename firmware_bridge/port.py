"""Open a serial port with pyserial, exclusively, turning failures into messages that say what to do.

Depends on pyserial and the standard library only (the receiver on a board uses it too).
"""

from __future__ import annotations

import errno
import os

import serial

from nasc.errors import TransferError

LIST_PORTS = "list ports with: python -m serial.tools.list_ports"


def open_port(name: str, baud: int, timeout_s: float = 0.02, write_timeout_s: float | None = 5.0) -> serial.Serial:
    """Open `name` at `baud` (8N1, raw, exclusive lock); TransferError for missing, busy or forbidden ports."""
    if "://" not in name and not os.path.exists(name):
        raise TransferError(f"serial port {name} does not exist; is the board plugged in? {LIST_PORTS}")
    try:
        if "://" in name:
            port = serial.serial_for_url(name, baudrate=baud, timeout=timeout_s, write_timeout=write_timeout_s)
        else:
            port = serial.Serial(name, baud, timeout=timeout_s, write_timeout=write_timeout_s, exclusive=True)
    except serial.SerialException as exc:
        code = exc.errno if isinstance(exc.errno, int) else None
        text = str(exc)
        if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK) or "exclusively lock" in text:
            raise TransferError(
                f"serial port {name} is busy: another program holds it (a terminal such as minicom, screen or "
                "picocom, a modem manager, or another nasc); close it and try again"
            ) from None
        if code in (errno.EACCES, errno.EPERM):
            raise TransferError(
                f"no permission to open serial port {name}; add your user to its group "
                f"(usually: sudo usermod -aG dialout $USER, then log in again)"
            ) from None
        if code == errno.ENOENT:
            raise TransferError(f"serial port {name} does not exist; {LIST_PORTS}") from None
        raise TransferError(f"cannot open serial port {name} at {baud} baud: {text}") from None
    except ValueError as exc:  # pyserial refuses bad settings (baud rate) with ValueError
        raise TransferError(f"cannot open serial port {name} at {baud} baud: {exc}") from None
    return port

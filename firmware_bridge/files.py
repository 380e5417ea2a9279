"""File handling shared by the receivers: safe names, whole-file sha256, durable atomic install. Stdlib only."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,200}$")


def safe_name_problem(name: str) -> str | None:
    """Why `name` cannot be a file name in the destination folder, or None."""
    if not SAFE_NAME.match(name):
        return f"file name {name!r} is not a plain name (letters, digits, '._+-', not starting with '.')"
    return None


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path, limit: int | None = None) -> str:
    """sha256 hex of the file (its first `limit` bytes when given)."""
    digest = hashlib.sha256()
    remaining = limit
    with open(path, "rb") as f:
        while remaining is None or remaining > 0:
            block = f.read(1 << 20 if remaining is None else min(1 << 20, remaining))
            if not block:
                break
            digest.update(block)
            if remaining is not None:
                remaining -= len(block)
    return digest.hexdigest()


def install(part: Path, final: Path) -> None:
    """fsync `part`, rename it to `final` atomically, fsync the folder."""
    with open(part, "rb") as f:
        os.fsync(f.fileno())
    os.replace(part, final)
    fsync_dir(final.parent)

"""The latency table: measured per-block latencies in SQLite (WAL, one transaction per entry).

An entry's key is the block's full signature plus the device fingerprint, the full target JSON and
the toolchain (the TVM version with how nasc lowers and runs, handed in by the caller), so an entry measured for another
target, device definition, TVM, VM mode, convolution lowering or layout is never reused.
Rows are checked by constraints and written whole in one transaction: no partial entry can exist.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasc.errors import InputError, MeasurementError
from nasc.signature import BlockSignature

from .oracle import Measurement
from .spec import DeviceSpec

TABLE_FILE = "latency.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS latency (
    key TEXT PRIMARY KEY,
    block TEXT NOT NULL,
    device TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    target_json TEXT NOT NULL,
    tvm_version TEXT NOT NULL,
    median_ms REAL NOT NULL CHECK (median_ms >= 0),
    p90_ms REAL NOT NULL CHECK (p90_ms >= 0),
    std_ms REAL NOT NULL CHECK (std_ms >= 0),
    cv REAL NOT NULL CHECK (cv >= 0),
    noisy INTEGER NOT NULL CHECK (noisy IN (0, 1)),
    emulated INTEGER NOT NULL CHECK (emulated IN (0, 1)),
    measurement_json TEXT NOT NULL CHECK (json_valid(measurement_json)),
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS latency_device ON latency (fingerprint, target_json, tvm_version);
"""


@dataclass(frozen=True)
class LatencyKey:
    """What makes a latency reusable: block signature, device fingerprint, target JSON, TVM version."""

    block: str
    device_fingerprint: str
    target_json: str
    tvm_version: str

    @classmethod
    def for_block(cls, block: BlockSignature, device: DeviceSpec, toolchain: str) -> LatencyKey:
        """The key of `block` measured on `device`, built by `toolchain` (the compiler's toolchain id)."""
        return cls(block.key(), device.fingerprint(), device.target_json(), toolchain)

    def text(self) -> str:
        """Readable, complete key (the table's primary key)."""
        return f"{self.block}|device:{self.device_fingerprint}|target:{self.target_json}|tvm:{self.tvm_version}"

    def signature(self) -> BlockSignature:
        """The block this key is about."""
        return BlockSignature.parse(self.block)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"block": self.block, "device_fingerprint": self.device_fingerprint,
                "target_json": self.target_json, "tvm_version": self.tvm_version}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyKey:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


@dataclass(frozen=True)
class LatencyEntry:
    """One row: a key and the measurement behind it."""

    key: LatencyKey
    measurement: Measurement
    created_at: str = ""

    @property
    def median_ms(self) -> float:
        """The block's latency."""
        return self.measurement.median_ms

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"key": self.key.to_dict(), "measurement": self.measurement.to_dict(), "created_at": self.created_at}


def _check_measurement(m: Measurement) -> None:
    for name in ("median_ms", "p90_ms", "std_ms", "cv", "mean_ms"):
        value = getattr(m, name)
        if not isinstance(value, float | int) or not math.isfinite(value) or value < 0:
            raise MeasurementError(f"refusing to store {m.what}: {name}={value!r} is not a finite non-negative number")
    if m.median_ms <= 0:
        raise MeasurementError(f"refusing to store {m.what}: median_ms={m.median_ms} (a block cannot take no time)")


class LatencyTable:
    """SQLite store of LatencyEntry rows; safe to share between threads (one lock, one connection).

    `toolchain` names how blocks are built now (the compiler's toolchain id): the entries that are
    current, missing or stale are judged against it. The file keeps entries of every toolchain.
    """

    def __init__(self, path: Path, toolchain: str) -> None:
        self.path = Path(path)
        self.toolchain = toolchain
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise InputError(
                    f"{self.path}: latency table schema {row[0]}, this nasc reads {SCHEMA_VERSION}; "
                    "move the file away and rebuild with `nasc lut build`"
                )
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{self.path}: not a readable latency table ({exc}); move it away and rebuild") from None

    @classmethod
    def in_cache(cls, cache_dir: Path, toolchain: str) -> LatencyTable:
        """The table under nasc's cache dir."""
        return cls(Path(cache_dir) / TABLE_FILE, toolchain)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> LatencyTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def put(self, key: LatencyKey, measurement: Measurement) -> LatencyEntry:
        """Store one entry in its own transaction (replacing an older one with the same key)."""
        _check_measurement(measurement)
        entry_json = json.dumps(measurement.to_dict(), sort_keys=True)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO latency VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,datetime('now'))",
                    (key.text(), key.block, measurement.device, key.device_fingerprint, key.target_json,
                     key.tvm_version, measurement.median_ms, measurement.p90_ms, measurement.std_ms,
                     measurement.cv, int(measurement.noisy), int(measurement.emulated), entry_json),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        found = self.get(key)
        assert found is not None
        return found

    def _entry(self, row: Sequence[Any]) -> LatencyEntry:
        block, fp, target_json, version, measurement_json, created = row
        return LatencyEntry(
            LatencyKey(block, fp, target_json, version), Measurement.from_dict(json.loads(measurement_json)), created
        )

    _COLUMNS = "block, fingerprint, target_json, tvm_version, measurement_json, created_at"

    def get(self, key: LatencyKey) -> LatencyEntry | None:
        """The entry stored under exactly `key`, or None."""
        with self._lock:
            row = self._db.execute(f"SELECT {self._COLUMNS} FROM latency WHERE key=?", (key.text(),)).fetchone()
        return self._entry(row) if row else None

    def entries(self, device: DeviceSpec | None = None, *, current_tvm_only: bool = False) -> list[LatencyEntry]:
        """Every entry (for `device` with its current fingerprint and target, if given), sorted by block."""
        query = f"SELECT {self._COLUMNS} FROM latency"
        params: list[str] = []
        clauses = []
        if device is not None:
            clauses += ["fingerprint=?", "target_json=?"]
            params += [device.fingerprint(), device.target_json()]
        if current_tvm_only:
            clauses.append("tvm_version=?")
            params.append(self.toolchain)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY block", params).fetchall()
        return [self._entry(r) for r in rows]

    def missing(self, blocks: Iterable[BlockSignature], device: DeviceSpec) -> list[BlockSignature]:
        """The blocks with no current entry for `device` (unique, in first-seen order; ``zero`` skipped)."""
        seen: set[str] = set()
        out = []
        for block in blocks:
            if block.op == "zero" or block.key() in seen:
                continue
            seen.add(block.key())
            if self.get(LatencyKey.for_block(block, device, self.toolchain)) is None:
                out.append(block)
        return out

    def count(self) -> int:
        """Number of rows."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM latency").fetchone()[0])

    def integrity_problems(self) -> list[str]:
        """SQLite's integrity check plus a re-parse of every row ([] when all is well)."""
        problems = []
        with self._lock:
            check = [r[0] for r in self._db.execute("PRAGMA integrity_check").fetchall()]
            rows = self._db.execute(f"SELECT key, {self._COLUMNS}, median_ms FROM latency").fetchall()
        if check != ["ok"]:
            problems.extend(check)
        for row in rows:
            try:
                entry = self._entry(row[1:7])
                _check_measurement(entry.measurement)
                if entry.key.text() != row[0] or abs(entry.median_ms - row[7]) > 1e-12:
                    problems.append(f"{row[0]}: columns disagree with the stored measurement")
                entry.key.signature()
            except Exception as exc:
                problems.append(f"{row[0]}: {exc}")
        return problems

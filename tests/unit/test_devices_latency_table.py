"""The SQLite latency table: complete keys, no stale reuse, no partial or invalid rows."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading

import pytest

from nasc.devices.latency_table import LatencyKey, LatencyTable
from nasc.devices.oracle import Measurement
from nasc.devices.registry import resolve_device
from nasc.errors import InputError, MeasurementError
from nasc.signature import BlockSignature

BLOCK = BlockSignature("mbconv", 16, 24, 16, kernel=5, expand=6, stride=2)
TOOLCHAIN = "0.27.0 vm=compiled layout=test"  # the table takes the compiler's toolchain id from its caller


def _m(median: float, what: str = "b", noisy: bool = False) -> Measurement:
    return Measurement(
        what=what, device="rpi4", emulated=False, median_ms=median, mean_ms=median, p90_ms=median * 1.1,
        std_ms=median * 0.01, cv=0.01, robust_cv=0.01, min_ms=median * 0.9, max_ms=median * 1.2, warmup=1,
        number=2, repeat=3, attempts=1, noisy=noisy, max_cv=0.1, runs_ms=(median, median, median),
    )


@pytest.fixture()
def table(tmp_path):
    with LatencyTable.in_cache(tmp_path, TOOLCHAIN) as t:
        yield t


def test_key_is_readable_and_complete() -> None:
    device = resolve_device("rpi4")
    key = LatencyKey.for_block(BLOCK, device, "0.27.0")
    text = key.text()
    assert text.startswith("mbconv-input:16x16x16-output:8x8x24-expand:6-kernel:5-stride:2-idskip:0|")
    assert device.fingerprint() in text and '"raspberry-pi/4b-aarch64"' in text and "tvm:0.27.0" in text
    assert key.signature() == BLOCK
    assert LatencyKey.from_dict(key.to_dict()) == key


def test_put_get_and_wal(table: LatencyTable) -> None:
    device = resolve_device("rpi4")
    key = LatencyKey.for_block(BLOCK, device, TOOLCHAIN)
    entry = table.put(key, _m(1.5))
    assert entry.median_ms == 1.5 and table.get(key) == entry
    assert table.count() == 1
    mode = sqlite3.connect(table.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert table.integrity_problems() == []


def test_stale_entries_are_never_reused(table: LatencyTable) -> None:
    device = resolve_device("rpi4")
    table.put(LatencyKey.for_block(BLOCK, device, "0.0.1-old"), _m(9.0))
    other_target = dataclasses.replace(device, target={"kind": "llvm", "mcpu": "cortex-a53"})
    table.put(LatencyKey.for_block(BLOCK, other_target, TOOLCHAIN), _m(8.0))
    emulated = dataclasses.replace(device, emulated=True)
    table.put(LatencyKey.for_block(BLOCK, emulated, TOOLCHAIN), _m(7.0))
    assert table.get(LatencyKey.for_block(BLOCK, device, TOOLCHAIN)) is None
    assert table.missing([BLOCK], device) == [BLOCK]
    assert table.entries(device, current_tvm_only=True) == []
    table.put(LatencyKey.for_block(BLOCK, device, TOOLCHAIN), _m(1.0))
    assert table.missing([BLOCK], device) == []
    assert [e.median_ms for e in table.entries(device, current_tvm_only=True)] == [1.0]
    assert TOOLCHAIN in table.entries(device, current_tvm_only=True)[0].key.text()


def test_missing_skips_zero_and_duplicates(table: LatencyTable) -> None:
    device = resolve_device("local")
    zero = BlockSignature("zero", 24, 24, 8, idskip=True)
    other = dataclasses.replace(BLOCK, kernel=3)
    assert table.missing([BLOCK, zero, BLOCK, other], device) == [BLOCK, other]


@pytest.mark.parametrize("median", [float("nan"), float("inf"), -1.0, 0.0])
def test_invalid_measurements_are_refused_and_leave_nothing(table: LatencyTable, median: float) -> None:
    key = LatencyKey.for_block(BLOCK, resolve_device("rpi4"), TOOLCHAIN)
    with pytest.raises(MeasurementError):
        table.put(key, _m(median))
    assert table.count() == 0


def test_database_constraints_refuse_a_partial_row(table: LatencyTable) -> None:
    db = sqlite3.connect(table.path)
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO latency (key, block) VALUES ('k', 'b')")
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(
            "INSERT INTO latency VALUES ('k','b','d','f','t','v',1,1,1,0,0,0,'{not json',datetime('now'))"
        )
    db.close()
    assert table.count() == 0


def test_parallel_writers(table: LatencyTable) -> None:
    device = resolve_device("local")
    blocks = [dataclasses.replace(BLOCK, in_channels=c) for c in range(1, 41)]

    def write(part: list[BlockSignature]) -> None:
        for b in part:
            table.put(LatencyKey.for_block(b, device, TOOLCHAIN), _m(float(b.in_channels), b.key()))

    threads = [threading.Thread(target=write, args=(blocks[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert table.count() == 40 and table.integrity_problems() == []
    assert sorted(e.median_ms for e in table.entries(device)) == [float(c) for c in range(1, 41)]


def test_not_a_database(tmp_path) -> None:
    bad = tmp_path / "latency.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(InputError, match=r"latency\.sqlite"):
        LatencyTable(bad, TOOLCHAIN)


def test_tuned_and_untuned_entries_of_a_block_get_their_own_keys_and_both_stay(tmp_path) -> None:
    from nasc.compiler.toolchain import table_toolchain, toolchain_id

    assert table_toolchain(0) == toolchain_id() and table_toolchain(8) != table_toolchain(16) != toolchain_id()
    with pytest.raises(ValueError, match="trials"):
        table_toolchain(-1)
    with pytest.raises(ValueError, match="threads"):
        table_toolchain(0, -1)
    device = resolve_device("local")
    with LatencyTable.in_cache(tmp_path, table_toolchain(0)) as untuned, \
            LatencyTable.in_cache(tmp_path, table_toolchain(8)) as tuned:
        untuned.put(LatencyKey.for_block(BLOCK, device, untuned.toolchain), _m(3.0))
        assert tuned.missing([BLOCK], device) == [BLOCK]  # an untuned entry never stands in for a tuned one
        tuned.put(LatencyKey.for_block(BLOCK, device, tuned.toolchain), _m(1.0))
        assert untuned.count() == 2
        assert [e.median_ms for e in untuned.entries(device, current_tvm_only=True)] == [3.0]
        assert [e.median_ms for e in tuned.entries(device, current_tvm_only=True)] == [1.0]


def test_table_trials_of_reads_back_what_table_toolchain_wrote() -> None:
    from nasc.compiler.toolchain import table_toolchain, table_trials_of

    assert [table_trials_of(table_toolchain(n)) for n in (0, 8, 32)] == [(0, 0), (8, 0), (32, 0)]
    assert table_trials_of(table_toolchain(8, 4)) == (8, 4) and table_trials_of(table_toolchain(0, 2)) == (0, 2)
    assert table_trials_of("0.0.1-old vm=compiled") is None
    assert table_trials_of(table_toolchain(0) + " tuned=x") is None


def test_entries_timed_with_other_thread_counts_never_mix(tmp_path) -> None:
    from nasc.compiler.toolchain import table_toolchain

    device = resolve_device("local")
    assert table_toolchain(8, 1) != table_toolchain(8, 2) != table_toolchain(8)
    with LatencyTable.in_cache(tmp_path, table_toolchain(8, 1)) as one, \
            LatencyTable.in_cache(tmp_path, table_toolchain(8, 2)) as two:
        one.put(LatencyKey.for_block(BLOCK, device, one.toolchain), _m(2.0))
        assert two.missing([BLOCK], device) == [BLOCK]
        two.put(LatencyKey.for_block(BLOCK, device, two.toolchain), _m(1.2))
        assert [e.median_ms for e in one.entries(device, current_tvm_only=True)] == [2.0]
        assert [e.median_ms for e in two.entries(device, current_tvm_only=True)] == [1.2]

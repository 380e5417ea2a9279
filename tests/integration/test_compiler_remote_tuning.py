"""Tuning on a device over RPC, the parts that need no device: database keys, cross export in the
builder's worker processes, refusals with their fixes, and nothing recorded when no candidate ran."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest

from nasc.compiler.remote_tuning import (
    ARTIFACT_NAME,
    CrossExport,
    ServerSessionOpener,
    TrackerSessionOpener,
    session_opener,
    tune_on_device,
)
from nasc.compiler.settings import CompileSettings
from nasc.compiler.target import tvm_target
from nasc.compiler.tune import (
    RECORD_FILE,
    Measurement,
    TuningSummary,
    database_dir_for,
    tune_module,
)
from nasc.compiler.tuning_budget import BUDGET_FILE
from nasc.devices.endpoint import Endpoint, device_endpoint
from nasc.devices.registry import resolve_device
from nasc.devices.server import free_port
from nasc.devices.spec import Connection, DeviceSpec
from nasc.errors import CompileError, DeviceUnreachable

AARCH64 = 0xB7  # ELF e_machine


def _tiny_relax_module():
    """One elementwise task: the smallest thing MetaSchedule extracts a task from."""
    from tvm import relax
    from tvm.script import relax as R

    @R.function
    def main(x: R.Tensor((4, 8), "float32"), y: R.Tensor((4, 8), "float32")) -> R.Tensor((4, 8), "float32"):
        with R.dataflow():
            z = R.add(x, y)
            R.output(z)
        return z

    import tvm

    return relax.get_pipeline("zero")(tvm.IRModule({"main": main}))


# -- database keys -------------------------------------------------------------------------------------------


def test_host_database_key_is_unchanged_by_device_keys(tmp_path: Path) -> None:
    """Records already tuned on the host stay where they were (target + TVM version only)."""
    import tvm

    from nasc.compiler.target import target_dict

    local = resolve_device("local")
    target = tvm_target(local)
    payload = json.dumps({"target": target_dict(target), "tvm": tvm.__version__}, sort_keys=True)
    digest = hashlib.sha256(payload.encode()).hexdigest()[:12]
    assert database_dir_for(tmp_path, target, local) == database_dir_for(tmp_path, target)
    assert database_dir_for(tmp_path, target, local).name.endswith(digest)


def test_emulated_and_real_boards_never_share_a_database(tmp_path: Path) -> None:
    real = resolve_device("rpi4")
    emulated = resolve_device("rpi4-emulated")
    target = tvm_target(real)
    assert real.target == emulated.target  # same target: only the device key separates them
    real_dir = database_dir_for(tmp_path, target, real)
    emu_dir = database_dir_for(tmp_path, target, emulated)
    assert real_dir != emu_dir
    assert "emulated" in emu_dir.name and "emulated" not in real_dir.name
    # The flag alone separates them, whatever the name.
    flagged = dataclasses.replace(real, emulated=True)
    assert database_dir_for(tmp_path, target, flagged) not in (real_dir, emu_dir)
    assert "emulated" in database_dir_for(tmp_path, target, flagged).name
    # Neither is the host's database for the same target.
    assert database_dir_for(tmp_path, target) not in (real_dir, emu_dir)
    # Stable: the same device gives the same folder (records are found again).
    assert database_dir_for(tmp_path, target, resolve_device("rpi4")) == real_dir


def test_another_board_with_the_same_target_gets_its_own_database(tmp_path: Path) -> None:
    board = resolve_device("rpi4")
    other = dataclasses.replace(board, name="pi-farm-b")
    target = tvm_target(board)
    assert database_dir_for(tmp_path, target, other) != database_dir_for(tmp_path, target, board)


def test_tuning_summary_round_trips_with_where_it_was_measured() -> None:
    summary = TuningSummary(database_dir="/x", trials_per_task=2, trials_run=6, seconds=1.5,
                            measured_on="rpi4-emulated via tracker 127.0.0.1:1 key 'k' EMULATED", emulated=True)
    again = TuningSummary.from_dict(json.loads(json.dumps(summary.to_dict())))
    assert again.measured_on == summary.measured_on and again.emulated is True
    old = {k: v for k, v in summary.to_dict().items() if k not in ("measured_on", "emulated")}
    assert TuningSummary.from_dict(old).emulated is False  # compile.json written before this field


# -- refusals ------------------------------------------------------------------------------------------------


def _tune_one_trial(device: DeviceSpec, tmp_path: Path) -> None:
    """Tune the tiny module for `device` at one trial, its endpoint found by devices/ as the pipeline does."""
    endpoint = functools.partial(device_endpoint, device, tmp_path)
    tune_on_device(_tiny_relax_module(), tvm_target(device), device, endpoint, tmp_path / "db",
                   CompileSettings(trials=1))


def test_rpc_server_that_is_not_there_names_address_and_fix(tmp_path: Path) -> None:
    port = free_port()
    device = dataclasses.replace(resolve_device("rpi4"), name="board",
                                 connection=Connection(kind="rpc", host="127.0.0.1", port=port))
    with pytest.raises(DeviceUnreachable) as info:
        _tune_one_trial(device, tmp_path)
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "board" in message and "tvm.exec.rpc_server" in message
    assert not (tmp_path / "db" / BUDGET_FILE).exists()


def test_a_cross_device_with_no_way_to_run_code_is_refused(tmp_path: Path) -> None:
    device = dataclasses.replace(resolve_device("rpi4"), name="pi-offline", connection=Connection(kind="local"))
    with pytest.raises(CompileError, match=r"pi-offline.*tracker://HOST:PORT/KEY.*--trials 0"):
        _tune_one_trial(device, tmp_path)


def test_session_openers_pick_the_endpoint_kind_and_pickle() -> None:
    endpoint = Endpoint("rpc", "127.0.0.1", 9090, "board", 1, emulated=False)
    assert session_opener(endpoint) == ServerSessionOpener("127.0.0.1", 9090)
    farm = dataclasses.replace(endpoint, kind="tracker", key="rpi4", servers=4)
    assert isinstance(session_opener(farm, 12.0), TrackerSessionOpener)
    for opener in (session_opener(endpoint), session_opener(farm, 12.0)):
        assert pickle.loads(pickle.dumps(opener)) == opener  # by reference: importable in a runner worker
    assert "EMULATED" in dataclasses.replace(farm, emulated=True).label and "EMULATED" not in farm.label
    assert "tracker 127.0.0.1:9090 key 'rpi4' (4 server(s))" in farm.label


def test_tracker_that_is_not_there_names_address_and_fix(tmp_path: Path) -> None:
    port = free_port()
    device = dataclasses.replace(resolve_device("rpi4"),
                                 connection=Connection(kind="tracker", host="127.0.0.1", port=port, key="rpi4"))
    with pytest.raises(DeviceUnreachable) as info:
        _tune_one_trial(device, tmp_path)
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "rpc_tracker" in message and "rpi4" in message
    assert not (tmp_path / "db" / BUDGET_FILE).exists()


# -- the cross export runs in the builder's worker processes -------------------------------------------------


def test_pooled_builder_exports_an_aarch64_shared_library_in_its_workers() -> None:
    from tvm.s_tir.meta_schedule.builder import BuilderInput

    from nasc.compiler.pooled_builder import PooledLocalBuilder
    from nasc.devices.registry import AARCH64_GXX

    device = resolve_device("rpi4")
    export = CrossExport(device)
    assert pickle.loads(pickle.dumps(export)) == export  # by reference: importable in a worker

    import tvm
    from tvm import te

    a = te.placeholder((16,), "float32", name="a")
    b = te.compute((16,), lambda i: a[i] + 1.0, name="b")
    mod = tvm.IRModule({"main": te.create_prim_func([a, b])})
    builder = PooledLocalBuilder(max_workers=1, timeout_sec=300.0, f_export=export)
    try:
        (result,) = builder.build([BuilderInput(mod, tvm_target(device))])
    finally:
        builder.shutdown()
    assert result.error_msg is None, result.error_msg
    artifact = Path(result.artifact_path)
    try:
        assert artifact.name == ARTIFACT_NAME and artifact.suffix == ".so"
        assert sorted(p.name for p in artifact.parent.iterdir()) == [ARTIFACT_NAME]  # the folder MS removes
        data = artifact.read_bytes()
        assert data[:4] == b"\x7fELF" and data[18] == AARCH64, f"not an aarch64 ELF (linked with {AARCH64_GXX}?)"
    finally:
        for path in artifact.parent.iterdir():
            path.unlink()
        artifact.parent.rmdir()


# -- nothing is recorded when no candidate could be measured -------------------------------------------------


@contextlib.contextmanager
def _failing_measurement(calls: list[str]) -> Iterator[Measurement]:
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.runner import PyRunner, PyRunnerFuture, RunnerResult

    @derived_object
    class Done(PyRunnerFuture):
        def done(self) -> bool:
            return True

        def result(self) -> RunnerResult:
            return RunnerResult(None, "RPCRunner: An exception occurred\nthe board said no")

    @derived_object
    class Refusing(PyRunner):
        def run(self, runner_inputs):
            return [Done() for _ in runner_inputs]

    calls.append("open")
    try:
        yield Measurement(Refusing(), where="a board that refuses everything")
    finally:
        calls.append("close")


def test_no_measured_candidate_fails_and_records_nothing(tmp_path: Path) -> None:
    local = resolve_device("local")
    target = tvm_target(local)
    database = tmp_path / "db"
    calls: list[str] = []
    with pytest.raises(CompileError) as info:
        tune_module(_tiny_relax_module(), target, database, 1, trials_per_iteration=1,
                    measurement=lambda: _failing_measurement(calls))
    message = str(info.value)
    assert "a board that refuses everything" in message and "the board said no" in message
    assert calls == ["open", "close"]
    # No budget written: the workload is still untuned, the next run measures it again.
    assert not (database / BUDGET_FILE).exists() and not (database / RECORD_FILE).exists()


def test_measurement_is_not_opened_when_every_task_is_tuned(tmp_path: Path) -> None:
    """A workload at its budget needs no device: no server starts (budget file from a real run's keys)."""
    from tvm.s_tir.meta_schedule.relax_integration import extract_tasks

    from nasc.compiler.tune import _workload_hash

    local = resolve_device("local")
    target = tvm_target(local)
    database = tmp_path / "db"
    database.mkdir()
    mod = _tiny_relax_module()
    hashes = [_workload_hash(t.dispatched[0]) for t in extract_tasks(mod, target)]
    assert hashes
    (database / BUDGET_FILE).write_text(json.dumps({h: 3 for h in hashes}))

    def must_not_open():
        raise AssertionError("measurement opened although nothing needs trials")

    summary = tune_module(mod, target, database, 2, measurement=must_not_open)
    assert summary.trials_run == 0 and summary.measured_on == ""
    assert all(t.trials_before == 3 and t.trials_run == 0 for t in summary.tasks)

"""Real TVM builds: export, compile for the host, tune with reuse, cross-compile for the Pi."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nasc.compiler.artifact import CompiledArtifact
from nasc.compiler.export import export_onnx
from nasc.compiler.reference_nets import mbconv_reference
from nasc.compiler.settings import CompileSettings
from nasc.devices.registry import resolve_device
from nasc.events import ProgressEvent
from nasc.pipeline.compile import compile_onnx
from nasc.pipeline.config import Config

NASC = [sys.executable, "-m", "nasc"]


def run_nasc(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NASC, *args], cwd=cwd, capture_output=True, text=True, timeout=900,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def mbconv_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ref = mbconv_reference(32)
    path = tmp_path_factory.mktemp("models") / "mbconv.onnx"
    exported = export_onnx(ref.module, ref.input_shape, path)
    assert exported.opset >= 17
    assert [s.shape for s in exported.inputs] == [(1, 3, 32, 32)]
    assert [s.shape for s in exported.outputs] == [(1, 10)]
    return path


def _run_library_in_fresh_process(library: Path, x: np.ndarray, tmp: Path) -> np.ndarray:
    """Load the built library in a new interpreter (nothing shared with the compiling process)."""
    np.save(tmp / "x.npy", x)
    script = (
        "import sys, numpy as np, tvm\n"
        "from tvm import relax\n"
        "vm = relax.VirtualMachine(tvm.runtime.load_module(sys.argv[1]), tvm.cpu())\n"
        "y = vm['main'](tvm.runtime.tensor(np.load(sys.argv[2])))\n"
        "np.save(sys.argv[3], y.numpy())\n"
    )
    subprocess.run([sys.executable, "-c", script, str(library), str(tmp / "x.npy"), str(tmp / "y.npy")],
                   check=True, capture_output=True, timeout=300)
    return np.load(tmp / "y.npy")


def test_compile_local_cli_matches_onnxruntime(mbconv_onnx: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    out = tmp_path / "art"
    result = run_nasc("compile", str(mbconv_onnx), "--device", "local", "--trials", "0", "-o", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Scope Saving" not in result.stdout + result.stderr
    artifact = CompiledArtifact.load(out)
    assert artifact.parity.checked and artifact.parity.passed
    assert artifact.parity.max_abs_err is not None and artifact.parity.max_abs_err < 1e-4
    assert artifact.target["mcpu"] not in ("native", "", None)
    assert artifact.target_triple.startswith("x86_64")
    x = np.random.default_rng(42).standard_normal((1, 3, 32, 32)).astype(np.float32)
    got = _run_library_in_fresh_process(artifact.library_path, x, tmp_path)
    want = ort.InferenceSession(str(artifact.onnx_path)).run(None, {"input": x})[0]
    assert np.abs(want).max() > 0.1  # outputs depend on the input (not a degenerate network)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)


class TinyNet(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def test_tuning_records_are_reused_across_runs_and_models(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    torch.manual_seed(0)
    first_model = export_onnx(TinyNet(10).eval(), (1, 3, 16, 16), tmp_path / "a.onnx").onnx_path
    second_model = export_onnx(TinyNet(4).eval(), (1, 3, 16, 16), tmp_path / "b.onnx").onnx_path
    local = resolve_device("local")
    settings = CompileSettings(trials=2, trials_per_iteration=2)

    first = compile_onnx(first_model, local, settings, tmp_path / "a1", cache)
    assert first.tuning.trials_run == 2 * len(first.tuning.tasks)  # 2 per task on average
    # Rounds of one: every task gets its blind round and its guided one, none more (tuning_focus.FIRST_ROUNDS).
    assert [t.trials_run for t in first.tuning.tasks] == [2] * len(first.tuning.tasks)
    assert first.tuning.tasks_tuned == len(first.tuning.tasks) > 0
    assert first.tuning.records_applied > 0
    assert first.parity.passed
    _check_untuned_schedule_is_a_contender(first, first_model)

    again = compile_onnx(first_model, local, settings, tmp_path / "a2", cache)
    assert again.tuning.trials_run == 0
    assert again.tuning.tasks_reused == len(again.tuning.tasks)
    assert again.tuning.records_applied == first.tuning.records_applied

    # Another model shares the convolution workload: it is not tuned again, only the new head is.
    other = compile_onnx(second_model, local, settings, tmp_path / "b1", cache)
    shared = {t.workload for t in first.tuning.tasks} & {t.workload for t in other.tuning.tasks}
    assert shared, "the two models should share the convolution workload"
    for task in other.tuning.tasks:
        if task.workload in shared:
            assert task.trials_run == 0 and task.trials_before > 0
    assert other.tuning.tasks_tuned == len(other.tuning.tasks) - len(shared)

    # A bigger budget tunes the same workloads further (only the difference).
    more = compile_onnx(first_model, local, CompileSettings(trials=3, trials_per_iteration=2), tmp_path / "a3", cache)
    assert sum(t.trials_before for t in more.tuning.tasks) == first.tuning.trials_run
    assert more.tuning.trials_run == len(more.tuning.tasks)

    # `nasc compile --trials 0` tunes nothing but applies the records there, and says so.
    shown = run_nasc("compile", str(first_model), "--device", "local", "--trials", "0", "-o", str(tmp_path / "a4"),
                     cwd=tmp_path, env={"NASC_CACHE_DIR": str(cache), "COLUMNS": "250"})
    assert shown.returncode == 0, shown.stderr
    applied = CompiledArtifact.load(tmp_path / "a4").tuning.records_applied
    assert applied == more.tuning.records_applied > 0
    assert f"no new trials (--trials 0); {applied} tuned ops applied from" in shown.stdout


def test_cross_compile_for_raspberry_pi_is_aarch64_elf(mbconv_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "pi"
    result = run_nasc("compile", str(mbconv_onnx), "--device", "rpi4", "--no-verify", "-o", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    header = (out / "model.so").read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and header[4] == 2  # 64-bit
    assert int.from_bytes(header[18:20], "little") == 183  # EM_AARCH64
    record = json.loads((out / "compile.json").read_text())
    assert record["target_triple"] == "aarch64-linux-gnu"
    assert record["target"]["mcpu"] == "cortex-a72"
    assert record["parity"]["checked"] is False


def test_cli_errors_are_clean(tmp_path: Path, mbconv_onnx: Path) -> None:
    missing = run_nasc("compile", "absent.onnx", cwd=tmp_path)
    assert missing.returncode == 3 and "absent.onnx: no such file" in missing.stderr
    assert "Traceback" not in missing.stderr
    (tmp_path / "notes.onnx").write_text("just text")
    bad = run_nasc("compile", "notes.onnx", cwd=tmp_path)
    assert bad.returncode == 3 and "not an ONNX model" in bad.stderr and "Traceback" not in bad.stderr
    unknown = run_nasc("compile", str(mbconv_onnx), "--device", "pi9", cwd=tmp_path)
    assert unknown.returncode == 4 and "known devices:" in unknown.stderr and "rpi4" in unknown.stderr


def test_failed_compile_keeps_previous_artifact(mbconv_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "keep"
    config = Config()
    good = compile_onnx(mbconv_onnx, config.device("local"), CompileSettings(), out, tmp_path / "c")
    before = (out / "compile.json").read_bytes()
    strict = CompileSettings(atol=0.0, rtol=0.0, verify_samples=1)
    from nasc.errors import ParityError

    try:
        compile_onnx(mbconv_onnx, config.device("local"), strict, out, tmp_path / "c")
    except ParityError:
        assert (out / "compile.json").read_bytes() == before  # nothing replaced
    assert good.library_path.exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".nasc-compile-")]


def _stop_after_two_batches(event: ProgressEvent) -> None:
    """A progress consumer that fails the run after its second measured batch (like a Ctrl-C)."""
    if event.stage == "tune" and event.step >= 2:
        raise RuntimeError("interrupted by the test")


def _check_untuned_schedule_is_a_contender(artifact: CompiledArtifact, model: Path) -> None:
    """Each task's untuned schedule was timed, and the record compile applies is never slower than it."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.relax_integration import extract_tasks

    from nasc.compiler.build import lower_for_tuning
    from nasc.compiler.default_schedule import default_database
    from nasc.compiler.frontend import import_onnx
    from nasc.compiler.onnx_model import load_onnx
    from nasc.compiler.target import tvm_target
    from nasc.compiler.tune import open_database

    assert all(t.default_us is not None and t.default_us > 0 for t in artifact.tuning.tasks), artifact.tuning.tasks
    db_dir = Path(artifact.tuning.database_dir)
    applied, tuned, untuned = open_database(db_dir), ms.database.JSONDatabase(work_dir=str(db_dir)), \
        default_database(db_dir)
    target = tvm_target(resolve_device("local"))
    tasks = [t for t in extract_tasks(lower_for_tuning(import_onnx(load_onnx(model)), target), target)
             if not t.mod.attrs.get("tirx.is_scheduled", False)]

    def best_secs(database, task) -> float:
        (record,) = database.get_top_k(database.commit_workload(task.dispatched[0]), 1)
        return float(np.mean([float(s) for s in record.run_secs]))

    for task in tasks:
        chosen = applied.query_tuning_record(task.dispatched[0], target, task.task_name)
        chosen_secs = float(np.mean([float(s) for s in chosen.run_secs]))
        assert chosen_secs == min(best_secs(tuned, task), best_secs(untuned, task)), task.task_name


def test_interrupted_tuning_keeps_what_it_measured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nasc.compiler import tune
    from nasc.compiler.build import lower_for_tuning
    from nasc.compiler.frontend import import_onnx
    from nasc.compiler.onnx_model import load_onnx
    from nasc.compiler.target import tvm_target
    from nasc.compiler.tuning_budget import BUDGET_FILE
    from nasc.errors import CompileError

    monkeypatch.setattr(tune, "CHECKPOINT_S", 3600.0)  # no periodic merge: the failure itself must keep the batches
    torch.manual_seed(0)
    model = export_onnx(TinyNet(10).eval(), (1, 3, 16, 16), tmp_path / "t.onnx").onnx_path
    target = tvm_target(resolve_device("local"))
    mod = lower_for_tuning(import_onnx(load_onnx(model)), target)
    db = tmp_path / "db"
    with pytest.raises(CompileError, match="interrupted by the test"):
        tune.tune_module(mod, target, db, 1, trials_per_iteration=1, progress=_stop_after_two_batches)
    kept = json.loads((db / BUDGET_FILE).read_text())
    # Both measured batches were merged and counted; no workload is marked done at level 1.
    assert sorted(e["trials"] for e in kept.values()) == [1, 1] and all(e["level"] == 0 for e in kept.values())
    resumed = tune.tune_module(mod, target, db, 1, trials_per_iteration=1)
    assert len(resumed.tasks) > 2
    # The resumed run spends only what is left, on the tasks the interruption left out.
    assert resumed.trials_run == len(resumed.tasks) - 2
    assert {t.workload for t in resumed.tasks if t.trials_run} == {t.workload for t in resumed.tasks
                                                                   if t.trials_before == 0}
    again = tune.tune_module(mod, target, db, 1, trials_per_iteration=1)
    assert again.trials_run == 0


_TUNE_UNTIL_KILLED = """
import sys
from pathlib import Path
from nasc.compiler import tune
from nasc.compiler.build import lower_for_tuning
from nasc.compiler.frontend import import_onnx
from nasc.compiler.onnx_model import load_onnx
from nasc.compiler.target import tvm_target
from nasc.devices.registry import resolve_device
from nasc.events import ProgressEvent

tune.CHECKPOINT_S = 0.0  # merge after every batch
target = tvm_target(resolve_device("local"))
mod = lower_for_tuning(import_onnx(load_onnx(Path(sys.argv[1]))), target)
tune.tune_module(mod, target, Path(sys.argv[2]), int(sys.argv[3]), trials_per_iteration=1)
"""


def test_a_killed_tuning_process_keeps_its_checkpoints(tmp_path: Path) -> None:
    """SIGKILL mid-run: the merged records and counts survive, and the next run spends only what is left."""
    import time

    from nasc.compiler import tune
    from nasc.compiler.build import lower_for_tuning
    from nasc.compiler.frontend import import_onnx
    from nasc.compiler.onnx_model import load_onnx
    from nasc.compiler.target import tvm_target
    from nasc.compiler.tuning_budget import BUDGET_FILE, TuningBudget

    torch.manual_seed(0)
    model = export_onnx(TinyNet(10).eval(), (1, 3, 16, 16), tmp_path / "k.onnx").onnx_path
    db = tmp_path / "db"
    per_task = 3
    child = subprocess.Popen([sys.executable, "-c", _TUNE_UNTIL_KILLED, str(model), str(db), str(per_task)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    spent = 0
    try:
        while spent < 2:
            assert child.poll() is None, f"tuning ended before it was killed:\n{child.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
            time.sleep(0.2)
            if (db / BUDGET_FILE).exists():
                spent = sum(e["trials"] for e in json.loads((db / BUDGET_FILE).read_text()).values())
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -9
    assert list(db.glob(f"{tune.RUN_PREFIX}*")), "the killed run's work folder should be left behind"

    target = tvm_target(resolve_device("local"))
    mod = lower_for_tuning(import_onnx(load_onnx(model)), target)
    kept = TuningBudget.load(db)
    resumed = tune.tune_module(mod, target, db, per_task, trials_per_iteration=1)
    before = sum(kept.get(t.workload).trials for t in resumed.tasks)
    assert before >= 2 and all(kept.get(t.workload).level == 0 for t in resumed.tasks)
    assert sum(t.trials_before for t in resumed.tasks) == before
    assert resumed.trials_run == per_task * len(resumed.tasks) - before  # only what was left
    assert not list(db.glob(f"{tune.RUN_PREFIX}*"))  # the stale work folder is gone
    assert tune.open_database(db) is not None

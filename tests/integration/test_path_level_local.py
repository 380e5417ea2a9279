"""`nasc search-and-compile --strategy path-level` on `local`, as a user runs it: the start network grows by
function-preserving moves, each new cell is measured on the device and stored in the latency table, and the
grown network is exported, compiled, checked against onnxruntime, measured, packaged and reported; a later
predictor finds every block in the table and measures nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_project import tiny_project

from nasc.compiler.toolchain import table_toolchain
from nasc.devices.latency_table import LatencyTable
from nasc.pipeline.cell_latency import MeasuringPredictor
from nasc.pipeline.config import load_config
from nasc.search.outputs import load_trained
from nasc.search.path_level.cell import PathArch
from nasc.search.runtime import search_space

NASC = [str(Path(sys.executable).parent / "nasc")]
PATH_LEVEL = """
[search.path_level]
start_epochs = 1
rounds = 2
moves_per_round = 2
finetune_steps = 5
[measure]
warmup = 1
number = 3
repeat = 5
passes = 1
"""


def test_path_level_search_and_compile_on_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "build.toml").write_text(tiny_project(final_epochs=1, latency_ms=0.2, extra=PATH_LEVEL))
    env = {**os.environ, "COLUMNS": "200", "NASC_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([*NASC, "search-and-compile", "--device", "local", "--strategy", "path-level",
                           "--trials", "0", "-o", "run", "--json"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=1200)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stderr[-4000:]}"
    summary = json.loads(done.stdout)
    run = tmp_path / "run"

    record = json.loads((run / "search" / "search.json").read_text())
    assert record["strategy"] == "path-level"
    assert [h["stage"] for h in record["history"]] == ["warmup", "path-level", "path-level", "final"]
    rounds = [h["path_round"] for h in record["history"] if "path_round" in h]
    assert [len(r["moves"]) for r in rounds] == [2, 2]
    arch, _ = load_trained(run / "search")
    assert isinstance(arch, PathArch) and summary["arch"] == str(arch)

    # every block the grown network runs, new cells included, is in the device's table now
    monkeypatch.setenv("NASC_CACHE_DIR", env["NASC_CACHE_DIR"])
    config = load_config(tmp_path / "build.toml")
    device = config.device("local")
    with LatencyTable.in_cache(config.cache_dir(), table_toolchain(0, device.threads)) as table:
        stored = {e.key.block for e in table.entries(device, current_tvm_only=True)}
    space = search_space(config.search, config.data, config.base_dir)
    tried = {PathArch.from_strings(space, m["arch"].split()) for r in rounds for m in r["moves"]
             if len(m["arch"].split()) == len(space.layers())}  # (a deepened network has a space of its own)
    assert any(b.op == "cell" for a in tried for b in a.blocks())  # the moves made cells the space does not list
    for grown in (arch, *tried):
        assert all(block.key() in stored for block in grown.blocks())
    again = MeasuringPredictor(config, device)  # the next search asks the table, not the device
    assert again.network_ms(arch.blocks()) == record["result"]["predicted_ms"] and again.measured == []

    assert summary["parity_passed"] and summary["measured_ms"] > 0
    assert summary["predicted_ms"] == record["result"]["predicted_ms"]
    report = (run / "report.html").read_text()
    assert "4d. Rounds" in report and "one cell per layer" in report
    for r in rounds:
        assert r["arch_after"] in report
    verified = subprocess.run([*NASC, "verify", summary["bundle"], "--json"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
    assert verified.returncode == 0, verified.stderr[-2000:]
    assert json.loads(verified.stdout)["manifest"]["accuracy"] == summary["test_accuracy"]

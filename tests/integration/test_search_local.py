"""`nasc search` end to end on the `local` device: a real latency table measured through TVM RPC on
127.0.0.1 (`nasc lut build`), a short search on digits, the trained net exported with the compiler's
export_onnx and checked against onnxruntime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from tiny_project import tiny_project

from nasc.compiler.export import export_onnx
from nasc.pipeline.config import load_config
from nasc.pipeline.search import device_predictor
from nasc.search.data import load_data
from nasc.search.outputs import load_trained

PROJECT = tiny_project()

NASC = [str(Path(sys.executable).parent / "nasc")]  # the console script, as a user runs it


def _nasc(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run([*NASC, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, f"nasc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr[-3000:]}"
    return result


def test_search_on_local_with_a_measured_table(tmp_path: Path) -> None:
    (tmp_path / "build.toml").write_text(PROJECT)
    _nasc(["lut", "build", "--device", "local"], tmp_path)
    run = _nasc(["search", "--device", "local", "-o", "out"], tmp_path)

    out = tmp_path / "out"
    record = json.loads((out / "search.json").read_text())
    assert record["complete"] is True
    assert [h["stage"] for h in record["history"]] == ["warmup", "search", "search"] + ["final"] * 8
    result = record["result"]

    config = load_config(tmp_path / "build.toml")
    predictor = device_predictor(config, config.device("local"))
    arch, net = load_trained(out)
    assert result["predicted_ms"] == predictor.network_ms(arch.blocks())
    assert result["meets_budget"] == (result["predicted_ms"] <= 0.05)
    assert ("within budget" if result["meets_budget"] else "OVER BUDGET") in run.stdout
    assert str(arch) in run.stdout
    assert result["test_accuracy"] > 0.5  # ten classes: chance is 0.1

    # the measured table drove the search: every layer's costs in search.json come from it
    for layer, costs in zip(arch.space.layers(), record["latency"]["layers"], strict=True):
        for op, ms in costs.items():
            assert ms == (0.0 if op == "zero" else predictor.block_ms(layer.signature(op)))

    exported = export_onnx(net, arch.input_shape(), tmp_path / "net.onnx")
    data = load_data(config.data, config.search.space, config.search.seed, tmp_path)
    x = data.test.x[:1].numpy()
    session = ort.InferenceSession(exported.onnx_path, providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x})[0]
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


NAO_SET = ["--set", "warmup_epochs=1", "--set", "rounds=2", "--set", "epochs_per_round=1", "--set", "initial_pool=8",
           "--set", "new_per_round=4"]


def test_nao_and_its_random_peer_search_on_local_and_pick_within_the_budget(tmp_path: Path) -> None:
    from nasc.pipeline.report import _pool_rounds_table
    from nasc.search.outputs import SearchRecord

    (tmp_path / "build.toml").write_text(tiny_project(final_epochs=2))
    _nasc(["lut", "build", "--device", "local"], tmp_path)
    config = load_config(tmp_path / "build.toml")
    predictor = device_predictor(config, config.device("local"))
    for strategy, extra in (("nao", ["--set", "epd_epochs=40", "--set", "seeds=4"]), ("random", [])):
        run = _nasc(["search", "--device", "local", "--strategy", strategy, *NAO_SET, *extra, "-o", strategy],
                    tmp_path)
        record = json.loads((tmp_path / strategy / "search.json").read_text())
        assert [h["stage"] for h in record["history"]] == ["warmup", strategy, strategy, "final", "final"]
        rounds = [h["pool_round"] for h in record["history"] if "pool_round" in h]
        # 8, then 4 new per round, up to the space's 14 distinct networks (a skip in layer 0 or 1 of the two
        # residual 8-channel layers is the same network: equivalent encodings count once)
        assert [r["pool_size"] for r in rounds] == [12, 14]
        if strategy == "random":
            assert [r["random"] for r in rounds] == [4, 2]
            assert all(r["decoded"] == 0 and r["heldout_kendall_tau"] is None for r in rounds)
        else:
            assert [r["decoded"] + r["random"] for r in rounds] == [4, 2] and all(r["step_sizes"] for r in rounds)
            assert all(r["equivalent_encodings"] > 0 for r in rounds)
            assert all((r["latency_head_mape"] is None) == (r["decoded"] == 0) for r in rounds)
            assert all(0 <= r["epd_token_accuracy"] <= 1 for r in rounds)
            assert all(r["heldout_kendall_tau"] is None or -1 <= r["heldout_kendall_tau"] <= 1 for r in rounds)
        result = record["result"]
        arch, _ = load_trained(tmp_path / strategy)
        assert result["predicted_ms"] == predictor.network_ms(arch.blocks())
        # the pick: the best scored architecture of the pool in [0.9 T, T] by the device's table, else the best
        # under T
        pool = result["figures"]["pool"]
        assert len(pool) == 14 and result["figures"]["budget_pick"]["ops"] == list(arch.ops)
        window = [p for p in pool if 0.9 * 0.05 <= p["predicted_ms"] <= 0.05] or [
            p for p in pool if p["predicted_ms"] <= 0.05]
        if window:
            best = max(p["valid_accuracy"] for p in window)
            assert next(p for p in pool if p["ops"] == list(arch.ops))["valid_accuracy"] == best
            assert result["meets_budget"]
        assert " ".join(result["figures"]["budget_pick"]["message"].split()) in " ".join(run.stdout.split())
        assert rounds[-1]["best_evaluated_accuracy"] == max(p["valid_accuracy"] for p in pool)
        table = _pool_rounds_table(SearchRecord.from_dict(record))
        assert table.count("<tr>") == 3 and "<td>14</td>" in table

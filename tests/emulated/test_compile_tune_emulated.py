"""MetaSchedule tuning measured on the emulated Raspberry Pi over RPC (tiny model, tiny budget).

Real parts only: a real tracker, the stock TVM RPC server inside the arm64 root file system under
qemu-user, MetaSchedule's RPCRunner, candidates cross-linked with aarch64-linux-gnu-g++, parity over RPC.
Each test gets its own tuning database (a fresh cache folder sharing only the cached root file system),
so a record left by an earlier run can never make "tuned" pass without measuring.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import onnx
import psutil
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from nasc.compiler.export import export_onnx
from nasc.compiler.settings import CompileSettings
from nasc.devices.emulated import emulated_server, ensure_rootfs
from nasc.devices.emulated.server import START_TIMEOUT_S
from nasc.devices.registry import resolve_device
from nasc.devices.server import RpcServerProcess, free_port, tracker_command
from nasc.devices.spec import Connection
from nasc.devices.tracker import wait_for_servers
from nasc.pipeline.compile import compile_onnx

TUNING_ARTIFACT = "tvm_tmp_mod.so"


@pytest.fixture()
def cache(isolated_cache: Path, tmp_path: Path) -> Path:
    """A fresh cache (empty tuning database) whose emulated/ is the shared, already built root file system."""
    ensure_rootfs("rpi4", isolated_cache)
    fresh = tmp_path / "cache"
    fresh.mkdir()
    (fresh / "emulated").symlink_to(isolated_cache / "emulated", target_is_directory=True)
    return fresh


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def _nasc(*args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nasc", *args], capture_output=True, text=True, timeout=1500,
                          cwd=cwd, env={**os.environ, "NASC_CACHE_DIR": str(cache), "COLUMNS": "250"})


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if any(text in part for part in proc.info["cmdline"] or []):
            found.append(proc.info["pid"])
    return found


def test_cli_tunes_on_the_emulated_pi_then_reuses_the_records(cache: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = export_onnx(TinyNet().eval(), (1, 3, 16, 16), tmp_path / "tiny.onnx").onnx_path

    first = _nasc("compile", str(model), "--device", "rpi4-emulated", "--trials", "1", "-o", str(tmp_path / "a"),
                  cwd=tmp_path, cache=cache)
    assert first.returncode == 0, first.stderr[-4000:]
    record = json.loads((tmp_path / "a" / "compile.json").read_text())
    tuning = record["tuning"]
    assert tuning["tasks_total"] >= 2
    assert tuning["trials_run"] == tuning["tasks_tuned"] == tuning["tasks_total"]  # 1 trial per task
    assert all(t["best_us"] is not None and t["best_us"] > 0 for t in tuning["tasks"]), tuning["tasks"]
    assert tuning["emulated"] is True and "EMULATED" in tuning["measured_on"]
    assert tuning["records_applied"] == tuning["tasks_total"]
    database = Path(tuning["database_dir"])
    assert database.parent == cache / "tuning" and "emulated" in database.name
    assert record["target_triple"] == "aarch64-linux-gnu"
    assert record["parity"]["passed"] and "EMULATED" in record["parity"]["where"]
    assert "EMULATED" in first.stdout
    # The tracker and server nasc started for tuning are gone.
    tracker = re.search(r"tracker (127\.0\.0\.1:\d+)", tuning["measured_on"])
    assert tracker, tuning["measured_on"]
    assert _processes_mentioning(tracker.group(1)) == []

    again = _nasc("compile", str(model), "--device", "rpi4-emulated", "--trials", "1", "-o", str(tmp_path / "b"),
                  cwd=tmp_path, cache=cache)
    assert again.returncode == 0, again.stderr[-4000:]
    second = json.loads((tmp_path / "b" / "compile.json").read_text())["tuning"]
    assert second["trials_run"] == 0 and second["measured_on"] == ""  # no server started for tuning
    assert second["tasks_reused"] == tuning["tasks_total"]
    assert second["records_applied"] == tuning["records_applied"]
    assert second["database_dir"] == tuning["database_dir"] and second["emulated"] is True
    assert json.loads((tmp_path / "b" / "compile.json").read_text())["parity"]["passed"]


def _relu_model(path: Path) -> Path:
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 8, 16, 16])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 8, 16, 16])
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["output"], name="relu")], "relu", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path


def test_tuning_through_a_tracker_measures_on_the_registered_server(cache: Path, tmp_path: Path) -> None:
    """The board-farm path (connection tracker://HOST:PORT/KEY), with the emulated board as the farm."""
    key = "farm-emulated"
    host = "127.0.0.1"
    tracker_port = free_port(host)
    server_log = tmp_path / "server.log"
    with RpcServerProcess(tracker_command(host, tracker_port, tracker_port + 10), host, tracker_port,
                          name="rpc tracker") as tracker:
        port = free_port(host)
        server = emulated_server("rpi4", cache, host, port, port + 10, tracker=f"{host}:{tracker.port}", key=key,
                                 log_path=server_log)
        server.start()
        try:
            server.wait_until_listening(START_TIMEOUT_S)
            wait_for_servers(host, tracker.port, key, 1, timeout_s=120)
            device = dataclasses.replace(resolve_device("rpi4"), name="farm-emulated", emulated=True,
                                         connection=Connection(kind="tracker", host=host, port=tracker.port, key=key))
            artifact = compile_onnx(_relu_model(tmp_path / "relu.onnx"), device,
                                    CompileSettings(trials=1, trials_per_iteration=1), tmp_path / "out", cache)
        finally:
            server.stop()
    _assert_tuned_on_server(artifact, f"tracker {host}:{tracker.port} key '{key}'", server_log)


def test_tuning_on_a_single_server_without_tracker(cache: Path, tmp_path: Path) -> None:
    """connection rpc://HOST:PORT: RPCRunner connects to the one server directly, candidate after candidate."""
    host = "127.0.0.1"
    port = free_port(host)
    server_log = tmp_path / "server.log"
    server = emulated_server("rpi4", cache, host, port, port + 10, log_path=server_log)
    server.start()
    try:
        server.wait_until_listening(START_TIMEOUT_S)
        device = dataclasses.replace(resolve_device("rpi4"), name="board-emulated", emulated=True,
                                     connection=Connection(kind="rpc", host=host, port=server.port))
        artifact = compile_onnx(_relu_model(tmp_path / "relu.onnx"), device,
                                CompileSettings(trials=1, trials_per_iteration=1), tmp_path / "out", cache)
    finally:
        server.stop()
    _assert_tuned_on_server(artifact, f"server {host}:{server.port}", server_log)


def _assert_tuned_on_server(artifact, where: str, server_log: Path) -> None:
    """Every task tuned on `where` (emulated), parity checked, each candidate loaded by that server."""
    tuning = artifact.tuning
    assert tuning.trials_run == len(tuning.tasks) >= 1
    assert where in tuning.measured_on and tuning.emulated
    assert artifact.parity.passed and artifact.parity.checked
    loads = [line for line in server_log.read_text(errors="replace").splitlines()
             if "load_module" in line and TUNING_ARTIFACT in line]
    assert len(loads) >= tuning.trials_run, server_log.read_text(errors="replace")[-3000:]

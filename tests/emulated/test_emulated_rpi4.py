"""The emulated Raspberry Pi end to end: a real arm64 Debian root file system (debootstrap, cached), the stock
TVM RPC server inside it under qemu-user registered with a real tracker, a model cross-compiled for
raspberry-pi/4b-aarch64 uploaded through the tracker, run there, and compared with onnxruntime.

Needs root and the apt packages debootstrap qemu-user-static binfmt-support g++-aarch64-linux-gnu.
The first run builds the root file system (about 3-4 minutes); NASC_TEST_CACHE_DIR keeps it between runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import psutil
import pytest
from onnx import TensorProto, helper, numpy_helper

from nasc.compiler.build import build_library
from nasc.compiler.runtime import load_vm, run_vm
from nasc.devices.emulated import cached_rootfs, ensure_rootfs, recipe_for
from nasc.devices.emulated.rootfs import chroot_env
from nasc.devices.registry import resolve_device
from nasc.devices.server import RpcServerProcess, free_port, tracker_command
from nasc.pipeline.config import load_config

CROSS_HINT = "apt-get install -y g++-aarch64-linux-gnu"
DEVICE = resolve_device("rpi4-emulated")


@pytest.fixture(scope="session")
def rootfs(isolated_cache: Path) -> Path:
    """The cached rpi4 root file system (built here on the first run; tests/conftest.py picks the cache)."""
    return ensure_rootfs("rpi4", isolated_cache)


@pytest.fixture(scope="session")
def cross_compiler() -> str:
    assert DEVICE.cross_compiler is not None
    path = shutil.which(DEVICE.cross_compiler)
    assert path, f"{DEVICE.cross_compiler} is not installed: {CROSS_HINT}"
    return path


def test_profile_is_marked_emulated() -> None:
    assert DEVICE.emulated and DEVICE.connection.kind == "emulated"
    assert DEVICE.target == "raspberry-pi/4b-aarch64"


def test_rootfs_runs_aarch64_python_with_the_pinned_wheels(rootfs: Path) -> None:
    recipe = recipe_for("rpi4")
    cache = Path(os.environ["NASC_CACHE_DIR"])
    stamp = cached_rootfs("rpi4", cache)
    assert stamp is not None and stamp.recipe == recipe
    names = [w.split("==")[0] for w in recipe.wheels]
    probe = (
        "import json, platform, importlib.metadata as m, tvm; "
        f"print(json.dumps([platform.machine(), {{d: m.version(d) for d in {names!r}}}]))"
    )
    result = subprocess.run(["chroot", str(rootfs), "python3", "-c", probe], capture_output=True, text=True,
                            env=chroot_env(), check=True, timeout=300)
    machine, versions = json.loads(result.stdout)
    assert machine == "aarch64" != os.uname().machine
    assert versions == dict(w.split("==") for w in recipe.wheels)
    # A second call finds the cached build without rebuilding it.
    before = (rootfs / ".nasc-rootfs.json").stat().st_mtime_ns
    assert ensure_rootfs("rpi4", cache) == rootfs
    assert (rootfs / ".nasc-rootfs.json").stat().st_mtime_ns == before


def _small_convnet(path: Path, seed: int = 0) -> Path:
    """Conv 3x3 -> Relu -> GlobalAveragePool -> Flatten -> Gemm, random weights: input 1x3x16x16, output 1x10."""
    rng = np.random.default_rng(seed)
    weights = {
        "conv_w": rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32),
        "conv_b": rng.normal(0, 0.1, (8,)).astype(np.float32),
        "fc_w": rng.normal(0, 0.3, (10, 8)).astype(np.float32),
        "fc_b": rng.normal(0, 0.1, (10,)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["input", "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["output"], transB=1, name="fc"),
    ]
    graph = helper.make_graph(
        nodes, "small_convnet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path


def test_cross_compiled_model_runs_through_the_tracker_and_matches_onnxruntime(
    rootfs: Path, cross_compiler: str, tmp_path: Path
) -> None:
    from tvm import rpc

    onnx_path = _small_convnet(tmp_path / "model.onnx")
    lib_path = build_library(onnx_path, DEVICE, tmp_path / "model.so")  # links with aarch64-linux-gnu-g++
    assert lib_path.read_bytes()[:4] == b"\x7fELF" and lib_path.read_bytes()[18] == 0xB7  # EM_AARCH64

    key = "rpi4-emulated-test"
    tracker_port = free_port()
    with RpcServerProcess(tracker_command("127.0.0.1", tracker_port, tracker_port + 1), "127.0.0.1", tracker_port,
                          name="rpc tracker") as tracker:
        # What a user runs: `nasc devices emulate rpi4 --tracker ... --key ...`, stopped with Ctrl-C (SIGINT).
        port = free_port()
        cli_log = tmp_path / "emulate.log"
        cmd = [_nasc_executable(), "devices", "emulate", "rpi4", "--port", str(port),
               "--tracker", f"127.0.0.1:{tracker.port}", "--key", key]
        with open(cli_log, "w") as log:
            cli = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "250"})
        try:
            _wait_for_text(cli, cli_log, "Press Ctrl-C to stop", timeout_s=300)
            assert "EMULATED rpi4" in cli_log.read_text()
            server_pids = [p.pid for p in psutil.Process(cli.pid).children(recursive=True)]
            assert server_pids, "no server process under nasc"

            remote = rpc.connect_tracker("127.0.0.1", tracker.port).request(key, priority=1, session_timeout=600)
            remote.upload(str(lib_path))
            dev = remote.cpu()
            vm = load_vm(remote.load_module(lib_path.name), dev)
            session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
            rng = np.random.default_rng(1)
            errors = []
            for _ in range(2):
                x = rng.normal(0, 1, (1, 3, 16, 16)).astype(np.float32)
                (got,) = run_vm(vm, [x], dev)
                want = session.run(None, {"input": x})[0]
                assert got.shape == want.shape
                errors.append(float(np.max(np.abs(got - want))))
            assert max(errors) < 1e-4, f"max abs error against onnxruntime: {errors}"
            assert float(np.std(want)) > 1e-3  # the outputs differ per class: the comparison means something
            del vm, remote

            cli.send_signal(signal.SIGINT)
            assert cli.wait(timeout=60) == 0, cli_log.read_text()
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait()
    assert "stopping the emulated rpi4 RPC server" in cli_log.read_text()
    assert [pid for pid in server_pids if _running(pid)] == [], "server processes outlived nasc"


def _nasc_executable() -> str:
    here = Path(sys.executable).with_name("nasc")
    return str(here) if here.exists() else (shutil.which("nasc") or "nasc")


def _wait_for_text(proc: subprocess.Popen, log: Path, text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in log.read_text():
            return
        assert proc.poll() is None, f"exited with {proc.returncode}:\n{log.read_text()}"
        time.sleep(0.2)
    raise AssertionError(f"'{text}' not seen within {timeout_s:.0f} s:\n{log.read_text()}")


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_measure_on_the_emulated_profile_is_labelled_emulated(rootfs: Path, cross_compiler: str,
                                                              tmp_path: Path) -> None:
    """`nasc measure --device rpi4-emulated` as a function: nasc starts the server in the rootfs itself."""
    from nasc.pipeline.measure import measure_model

    config = load_config().with_section("measure", warmup=1, number=2, repeat=3)
    report = measure_model(_small_convnet(tmp_path / "m.onnx", seed=3), DEVICE, config, out_dir=tmp_path / "out")
    assert report.measurement.emulated is True
    assert report.to_dict()["measurement"]["emulated"] is True
    assert json.loads(Path(report.json_path).read_text())["measurement"]["emulated"] is True
    assert report.parity.checked and report.parity.passed, report.parity
    assert report.parity.max_abs_err < 1e-4 and "EMULATED" in report.parity.where, report.parity

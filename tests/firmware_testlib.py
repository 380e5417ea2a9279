"""Test helpers for firmware_bridge: a tiny real ONNX model and a compile output folder around it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nasc.compiler.artifact import CompiledArtifact
from nasc.compiler.tune import TuningSummary
from nasc.compiler.verify import ParityReport
from nasc.devices.oracle import Measurement
from nasc.devices.registry import resolve_device
from nasc.pipeline.measure import MeasureReport
from nasc.search.outputs import SearchRecord, SearchResult
from nasc.search.settings import SpaceSettings, StageSettings
from nasc.search.space import ArchSpec, SearchSpace
from nasc.tensors import TensorSpec

INPUT_SHAPE = (1, 3, 8, 8)
OUTPUT_SHAPE = (1, 10)


def tiny_onnx_model(seed: int = 0) -> onnx.ModelProto:
    """Conv(3->4, stride 2) + ReLU + Flatten + Gemm(64->10): weights drawn from `seed`."""
    rng = np.random.default_rng(seed)
    weights = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.standard_normal((4,)).astype(np.float32), "B"),
        numpy_helper.from_array(rng.standard_normal((10, 64)).astype(np.float32), "W2"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "W", "B"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Gemm", ["f", "W2"], ["output"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(INPUT_SHAPE))],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(OUTPUT_SHAPE))],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    return model


def write_compile_dir(folder: Path, library_bytes: bytes | None = None, seed: int = 0, **extra: object) -> Path:
    """A compile output folder written through compile.json's own class: model.onnx, model.so, compile.json.

    `library_bytes` stands in for model.so in tests of bundle logic only; integration tests
    put a real TVM-built library there instead (write it after calling this with None).
    `extra` overrides keys of compile.json (to test how a damaged record is refused).
    """
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(tiny_onnx_model(seed), folder / "model.onnx")
    if library_bytes is not None:
        (folder / "model.so").write_bytes(library_bytes)
    artifact = CompiledArtifact(
        directory=str(folder),
        device=resolve_device("local").to_dict(),
        library="model.so",
        library_sha256=hashlib.sha256(library_bytes or b"").hexdigest(),
        onnx="model.onnx",
        onnx_sha256=hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest(),
        target={"kind": "llvm"},
        target_triple="x86_64-linux-gnu",
        tvm_version="0.27.0.post1",
        nasc_version="0.1.0",
        onnx_version=onnx.__version__,
        inputs=(TensorSpec("input", INPUT_SHAPE, "float32", "NCHW"),),
        outputs=(TensorSpec("output", OUTPUT_SHAPE, "float32", "NC"),),
        tuning=TuningSummary(database_dir=None, trials_per_task=0),
        parity=ParityReport(checked=True, where="this host (in-process)", samples=1, max_abs_err=1e-6,
                            max_rel_err=1e-6, passed=True),
    )
    (folder / "compile.json").write_text(json.dumps({**artifact.to_dict(), **extra}, indent=2))
    return folder


def refresh_library_hash(folder: Path) -> None:
    """Record model.so's sha256 in compile.json after a test put a real library there."""
    record = json.loads((folder / "compile.json").read_text())
    record["library_sha256"] = hashlib.sha256((folder / "model.so").read_bytes()).hexdigest()
    (folder / "compile.json").write_text(json.dumps(record, indent=2))


def two_in_two_out_onnx_model(seed: int = 0) -> onnx.ModelProto:
    """Inputs a [2,4] and b [2,6]; outputs relu(a @ W + b) [2,6] and sum(a @ W), a scalar."""
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.standard_normal((4, 6)).astype(np.float32), "W")
    nodes = [
        helper.make_node("MatMul", ["a", "W"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["sum"]),
        helper.make_node("Relu", ["sum"], ["relu"]),
        helper.make_node("ReduceSum", ["m"], ["total"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "two_in_two_out",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 4]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, 6])],
        [helper.make_tensor_value_info("relu", TensorProto.FLOAT, [2, 6]),
         helper.make_tensor_value_info("total", TensorProto.FLOAT, [])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    return model


def write_search_record(folder: Path, *, test_accuracy: float = 0.9, predicted_ms: float = 0.5,
                        preprocessing: dict[str, object] | None = None) -> Path:
    """A finished search's search.json and arch.json, written through their own classes (no training)."""
    space = SearchSpace(SpaceSettings(resolution=8, stages=(StageSettings(8, 1, 1),)), 10)
    arch = ArchSpec.uniform(space, "k3_e3")
    result = SearchResult(arch=arch, strategy="proxyless", predicted_ms=predicted_ms, block_sum_ms=predicted_ms,
                          budget_ms=None, meets_budget=None, test_accuracy=test_accuracy,
                          valid_accuracy=test_accuracy, seed=0, out_dir=str(folder),
                          preprocessing=dict(preprocessing or {}))
    folder.mkdir(parents=True, exist_ok=True)
    record = SearchRecord(complete=True, strategy="proxyless", settings={}, space=space.to_dict(), latency={},
                          history=(), result=result)
    (folder / "search.json").write_text(json.dumps(record.to_dict(), indent=2))
    (folder / "arch.json").write_text(json.dumps(arch.to_dict(), indent=2))
    return folder


def write_measure_record(folder: Path, *, median_ms: float, device: str = "local", emulated: bool = False,
                         noisy: bool = False) -> Path:
    """measure.json in a compile folder, written through its own class (the figures are the test's)."""
    m = median_ms
    measurement = Measurement(
        what="model.onnx", device=device, emulated=emulated, median_ms=m, mean_ms=m, p90_ms=m * 1.1, std_ms=m * 0.01,
        cv=0.01, robust_cv=0.01, min_ms=m * 0.9, max_ms=m * 1.2, warmup=1, number=2, repeat=3, attempts=1,
        noisy=noisy, max_cv=0.1, runs_ms=(m, m, m),
    )
    report = MeasureReport(model="model.onnx", measurement=measurement,
                           parity=ParityReport(checked=True, where=device, samples=1, max_abs_err=0.0,
                                               max_rel_err=0.0, passed=True),
                           artifact_dir=str(folder), tuned=False, trials_per_task=0)
    (folder / "measure.json").write_text(json.dumps(report.to_dict(), indent=2))
    return folder

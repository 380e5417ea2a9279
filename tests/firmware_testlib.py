"""Test helpers for firmware_bridge: a tiny real ONNX model and a compile output folder around it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

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
    """A compile output folder in the contract's shape: model.onnx, model.so, compile.json.

    `library_bytes` stands in for model.so in tests of bundle logic only; integration tests
    put a real TVM-built library there instead (write it after calling this with None).
    """
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(tiny_onnx_model(seed), folder / "model.onnx")
    if library_bytes is not None:
        (folder / "model.so").write_bytes(library_bytes)
    record = {
        "schema": "nasc.compile/1",
        "device": {"name": "local", "target": {"kind": "llvm"}, "connection": "local", "emulated": False},
        "library": "model.so",
        "onnx": "model.onnx",
        "onnx_sha256": hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest(),
        "target": {"kind": "llvm"},
        "target_triple": "x86_64-linux-gnu",
        "tvm_version": "0.27.0.post1",
        "nasc_version": "0.1.0",
        "onnx_version": onnx.__version__,
        "inputs": [{"name": "input", "shape": list(INPUT_SHAPE), "dtype": "float32", "layout": "NCHW"}],
        "outputs": [{"name": "output", "shape": list(OUTPUT_SHAPE), "dtype": "float32", "layout": "NC"}],
        "tuning": {},
        "parity": {"checked": True, "max_abs_err": 1e-6, "max_rel_err": 1e-6},
        **extra,
    }
    (folder / "compile.json").write_text(json.dumps(record, indent=2))
    return folder


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

"""Compiler checks that need TVM's Python package but no device: operators, parity, ONNX input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from nasc.compiler.frontend import check_operators, import_onnx
from nasc.compiler.onnx_model import io_specs, load_onnx
from nasc.compiler.verify import check_parity, random_inputs
from nasc.errors import InputError, ParityError, UnsupportedOperator
from nasc.tensors import TensorSpec


def _model(nodes: list[onnx.NodeProto], inputs, outputs, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_unsupported_operator_names_node_and_op() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])
    model = _model(
        [helper.make_node("Relu", ["x"], ["y"], name="fine"), helper.make_node("Celu", ["y"], ["z"], name="my_celu")],
        [x], [z],
    )
    onnx.checker.check_model(model, full_check=True)
    with pytest.raises(UnsupportedOperator) as info:
        import_onnx(model, "m.onnx")
    message = str(info.value)
    assert "m.onnx" in message and "'my_celu'" in message and "'Celu'" in message


def test_supported_model_imports() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="r")], [x], [y])
    check_operators(model, "m.onnx")  # no error
    mod = import_onnx(model, "m.onnx")
    assert "main" in [gv.name_hint for gv in mod.functions]


def test_dynamic_dimension_is_refused_with_axis(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [x], [y])
    with pytest.raises(InputError, match=r"dynamic dimension 'N' at axis 0"):
        io_specs(model, "dyn.onnx")


def test_not_onnx_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_onnx(tmp_path / "absent.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 definitely not protobuf \xff" * 10)
    with pytest.raises(InputError, match=r"junk\.onnx: not an ONNX model"):
        load_onnx(junk)
    with pytest.raises(InputError, match="is a directory"):
        load_onnx(tmp_path)


def test_parity_passes_within_tolerance_and_fails_beyond() -> None:
    specs_in = (TensorSpec("x", (2, 3), "float32"),)
    specs_out = (TensorSpec("y", (2, 3), "float32"),)

    def reference(inputs: list[np.ndarray]) -> list[np.ndarray]:
        return [inputs[0] * 2.0]

    def close(inputs: list[np.ndarray]) -> list[np.ndarray]:
        return [inputs[0] * 2.0 + 1e-6]

    def off(inputs: list[np.ndarray]) -> list[np.ndarray]:
        return [inputs[0] * 2.0 + 0.05]

    report = check_parity(close, reference, specs_in, specs_out, samples=2, atol=1e-4, rtol=1e-3, seed=0, where="t")
    assert report.passed and report.max_abs_err is not None and report.max_abs_err < 1e-5
    with pytest.raises(ParityError) as info:
        check_parity(off, reference, specs_in, specs_out, samples=2, atol=1e-4, rtol=1e-3, seed=0, where="t")
    assert "output 'y'" in str(info.value) and "max abs error 0.05" in str(info.value)


def test_random_inputs_are_deterministic_and_typed() -> None:
    specs = (TensorSpec("a", (2, 2), "float32"), TensorSpec("b", (3,), "int64"))
    first, second = random_inputs(specs, 7), random_inputs(specs, 7)
    assert all(np.array_equal(x, y) for x, y in zip(first, second, strict=True))
    assert first[0].dtype == np.float32 and first[1].dtype == np.int64
    assert not np.array_equal(random_inputs(specs, 8)[0], first[0])

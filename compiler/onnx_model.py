"""Load and describe an ONNX file, refusing what nasc cannot compile with a clear message."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import helper

from nasc.errors import InputError
from nasc.tensors import TensorSpec, default_layout


def load_onnx(path: str | Path, *, full_check: bool = True) -> onnx.ModelProto:
    """Read and check an ONNX file; missing, unreadable or invalid files are InputError."""
    file = Path(path)
    if not file.exists():
        raise InputError(f"{file}: no such file; give the path of an .onnx model")
    if not file.is_file():
        raise InputError(f"{file}: is a directory, not an .onnx model file")
    try:
        model = onnx.load(str(file))
    except Exception as exc:  # onnx raises DecodeError, ValueError, ...
        raise InputError(
            f"{file}: not an ONNX model ({type(exc).__name__}: {exc}); export one with torch.onnx.export"
        ) from None
    if not model.graph.node:
        raise InputError(f"{file}: not an ONNX model (no graph nodes); export one with torch.onnx.export")
    try:
        onnx.checker.check_model(model, full_check=full_check)
    except Exception as exc:
        raise InputError(f"{file}: the ONNX checker refuses this model: {exc}") from None
    return model


def _spec(value: onnx.ValueInfoProto, where: str) -> TensorSpec:
    tensor_type = value.type.tensor_type
    if not value.type.HasField("tensor_type"):
        raise InputError(f"{where}: '{value.name}' is not a tensor; nasc compiles tensor-in, tensor-out models")
    shape: list[int] = []
    for axis, dim in enumerate(tensor_type.shape.dim):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            shape.append(int(dim.dim_value))
        else:
            label = dim.dim_param or "?"
            raise InputError(
                f"{where}: '{value.name}' has a dynamic dimension '{label}' at axis {axis}; nasc compiles static "
                "shapes for a device: export the model with fixed shapes (e.g. batch 1)"
            )
    dtype = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name
    return TensorSpec(name=value.name, shape=tuple(shape), dtype=dtype, layout=default_layout(len(shape)))


def io_specs(model: onnx.ModelProto, where: str = "model") -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Input and output specs (graph inputs that are initializers are weights, not inputs)."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = tuple(_spec(v, where) for v in model.graph.input if v.name not in initializers)
    outputs = tuple(_spec(v, where) for v in model.graph.output)
    if not inputs:
        raise InputError(f"{where}: the model has no inputs")
    return inputs, outputs


def opset_version(model: onnx.ModelProto) -> int:
    """The default-domain opset the model was exported with."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0

"""A seeded sample input and its expected output, computed by onnxruntime on the ONNX model."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from nasc.errors import InputError, ToolMissing

from .manifest import TensorSpec

# numpy dtype names the sample generator can fill.
_INT_KINDS = ("i", "u")


def sample_inputs(inputs: tuple[TensorSpec, ...], seed: int) -> list[np.ndarray]:
    """One array per input, drawn from `seed` (normal for floats, small integers, booleans)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in inputs:
        try:
            dtype = np.dtype(spec.dtype)
        except TypeError:
            raise InputError(f"input {spec.name!r}: dtype {spec.dtype!r} is not a numpy dtype") from None
        if dtype.kind == "f":
            arrays.append(rng.standard_normal(spec.shape).astype(dtype))
        elif dtype.kind in _INT_KINDS:
            arrays.append(rng.integers(0, 10, size=spec.shape).astype(dtype))
        elif dtype.kind == "b":
            arrays.append(rng.integers(0, 2, size=spec.shape).astype(bool))
        else:
            raise InputError(f"input {spec.name!r}: cannot make a sample of dtype {spec.dtype}")
    return arrays


def reference_outputs(
    onnx_path: Path, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...], arrays: list[np.ndarray]
) -> list[np.ndarray]:
    """Run the ONNX model in onnxruntime (one thread, deterministic) and return outputs in `outputs` order."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ToolMissing("onnxruntime is not installed; pip install onnxruntime==1.31.1") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise InputError(f"{onnx_path}: onnxruntime cannot load the model: {exc}") from None
    model_inputs = [i.name for i in session.get_inputs()]
    model_outputs = [o.name for o in session.get_outputs()]
    wanted_in = [s.name for s in inputs]
    if sorted(model_inputs) != sorted(wanted_in):
        raise InputError(f"{onnx_path}: the model's inputs {model_inputs} differ from compile.json's {wanted_in}")
    missing = [s.name for s in outputs if s.name not in model_outputs]
    if missing:
        raise InputError(f"{onnx_path}: the model has no output(s) {missing} named in compile.json ({model_outputs})")
    try:
        results = session.run([s.name for s in outputs], dict(zip(wanted_in, arrays, strict=True)))
    except Exception as exc:
        raise InputError(f"{onnx_path}: onnxruntime failed on the sample input: {exc}") from None
    for spec, array in zip(outputs, results, strict=True):
        if tuple(array.shape) != spec.shape:
            raise InputError(
                f"{onnx_path}: output {spec.name!r} has shape {list(array.shape)}, compile.json says {list(spec.shape)}"
            )
    return [np.ascontiguousarray(a) for a in results]


def npy_bytes(array: np.ndarray) -> bytes:
    """The .npy encoding of `array` (C order, format 1.0): deterministic for equal arrays."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()

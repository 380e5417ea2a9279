"""torch nn.Module -> ONNX file, fully checked, with its input/output specs recorded."""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from nasc.errors import CompileError
from nasc.fsutil import atomic_write_bytes, sha256_file
from nasc.tensors import TensorSpec

from .onnx_model import io_specs, load_onnx

MIN_OPSET = 17


@dataclass(frozen=True)
class ExportedModel:
    """An ONNX file written by :func:`export_onnx`."""

    onnx_path: str
    sha256: str
    opset: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "onnx_path": self.onnx_path,
            "sha256": self.sha256,
            "opset": self.opset,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportedModel:
        """Inverse of :meth:`to_dict`."""
        return cls(
            onnx_path=data["onnx_path"],
            sha256=data["sha256"],
            opset=int(data["opset"]),
            inputs=tuple(TensorSpec.from_dict(s) for s in data["inputs"]),
            outputs=tuple(TensorSpec.from_dict(s) for s in data["outputs"]),
        )


def export_onnx(
    module: Any,
    input_shape: tuple[int, ...],
    path: str | Path,
    opset: int = MIN_OPSET,
    input_name: str = "input",
    output_name: str = "output",
) -> ExportedModel:
    """Export `module` (evaluated in eval mode) for a float32 input of `input_shape`.

    The file is checked with onnx.checker (full check, which runs shape inference) before it
    replaces `path`, so a failed export never leaves a broken file behind.
    """
    import torch

    if opset < MIN_OPSET:
        raise CompileError(f"ONNX opset {opset} is too old; nasc exports opset >= {MIN_OPSET}")
    target = Path(path)
    was_training = module.training
    module.eval()
    example = torch.zeros(*input_shape, dtype=torch.float32)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_file = Path(tmp) / "model.onnx"
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                # The TorchScript exporter: fast, folds BatchNorm into convolutions, opset 17 exactly.
                torch.onnx.export(
                    module,
                    (example,),
                    str(tmp_file),
                    opset_version=opset,
                    input_names=[input_name],
                    output_names=[output_name],
                    do_constant_folding=True,
                    dynamo=False,
                )
        except Exception as exc:
            raise CompileError(f"torch.onnx.export failed for {type(module).__name__}: {exc}") from exc
        finally:
            module.train(was_training)
        model = load_onnx(tmp_file, full_check=True)
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        atomic_write_bytes(target, model.SerializeToString())
    inputs, outputs = io_specs(model, str(target))
    return ExportedModel(
        onnx_path=str(target), sha256=sha256_file(target), opset=opset, inputs=inputs, outputs=outputs
    )

"""Shape arithmetic of static-shaped ONNX models is folded before import (compiler/shape_folding.py), so
torch's `chunk` and `view(x.size()...)` reach TVM as static slices and reshapes; models without such
arithmetic are imported exactly as they come."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from nasc.compiler.export import export_onnx
from nasc.compiler.frontend import import_onnx
from nasc.compiler.shape_folding import fold_static_shapes
from nasc.compiler.standard_nets import channel_shuffle

pytestmark = pytest.mark.usefixtures("one_thread")


class SplitShuffle(nn.Module):
    """A convolution, its channels halved (chunk), one half convolved again, concatenated, shuffled."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(8, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept, changed = self.first(x).chunk(2, dim=1)
        return channel_shuffle(torch.cat([kept, self.second(changed)], dim=1), 2)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {model.graph.input[0].name: x})[0]


def test_shape_arithmetic_is_folded_and_the_model_computes_the_same(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = export_onnx(SplitShuffle().eval(), (1, 3, 8, 8), tmp_path / "split.onnx").onnx_path
    model = onnx.load(str(path))
    assert {"Shape", "Gather"} <= {n.op_type for n in model.graph.node}  # what torch's exporter writes
    folded = fold_static_shapes(model)
    onnx.checker.check_model(folded, full_check=True)
    left = {n.op_type for n in folded.graph.node}
    assert not left & {"Shape", "Gather", "Div"}, left
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(_run(folded, x), _run(model, x))


def test_the_imported_module_has_static_shapes_only_after_folding(tmp_path: Path) -> None:
    from tvm import relax

    torch.manual_seed(0)
    path = export_onnx(SplitShuffle().eval(), (1, 3, 8, 8), tmp_path / "split.onnx").onnx_path

    def unknown_shapes(mod: object) -> int:
        count = 0

        def visit(expr: object) -> None:
            nonlocal count
            ty = getattr(expr, "ty", None)
            if isinstance(ty, relax.TensorType) and not isinstance(ty.shape, relax.ShapeExpr):
                count += 1

        relax.analysis.post_order_visit(mod["main"].body, visit)
        return count

    from tvm.relax.frontend.onnx import from_onnx

    assert unknown_shapes(from_onnx(onnx.load(str(path)), keep_params_in_input=False)) > 0  # the failure mode
    assert unknown_shapes(import_onnx(onnx.load(str(path)))) == 0


def test_a_model_without_shape_arithmetic_is_returned_as_it_came(tmp_path: Path) -> None:
    path = export_onnx(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval(), (1, 3, 8, 8), tmp_path / "c.onnx")
    model = onnx.load(str(path.onnx_path))
    assert fold_static_shapes(model) is model

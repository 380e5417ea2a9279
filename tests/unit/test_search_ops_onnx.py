"""Every op of the op registry (and the fixed stem / head) builds, runs, exports to ONNX opset 17,
passes onnx.checker and gives the same output in onnxruntime (TVM compiles them in
tests/integration/test_search_ops_compile.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from nasc.search.settings import DEFAULT_OPS
from nasc.search.space import build_block, op_signature
from nasc.signature import BlockSignature

BLOCKS: dict[str, BlockSignature] = {
    "stem": BlockSignature("stem", 3, 16, 32, kernel=3, stride=2),
    "head": BlockSignature("head", 64, 10, 4, expand=4),
}
for _op in DEFAULT_OPS:
    BLOCKS[f"{_op}-s1-residual"] = op_signature(_op, 24, 24, 8, stride=1)
    if _op != "zero":
        BLOCKS[f"{_op}-s2"] = op_signature(_op, 16, 24, 16, stride=2)


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_block_builds_runs_and_exports_to_onnx(name: str, tmp_path: Path) -> None:
    sig = BLOCKS[name]
    torch.manual_seed(0)
    module = build_block(sig).eval()
    x = torch.randn(sig.input_shape())
    with torch.no_grad():
        expected = module(x).numpy()
    assert np.isfinite(expected).all()
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(module, (x,), str(path), opset_version=17, input_names=["x"], output_names=["y"], dynamo=False)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)

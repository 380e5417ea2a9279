"""Every op of the search space's registry (and the fixed stem and head) is exported, compiled with TVM for
`local` and checked against onnxruntime, with batch-norm statistics randomised so outputs depend on inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from batch_norm import randomise_batch_norm

from nasc.compiler.export import export_onnx
from nasc.compiler.settings import CompileSettings
from nasc.devices.registry import resolve_device
from nasc.pipeline.compile import compile_onnx
from nasc.search.settings import DEFAULT_OPS, SpaceSettings, StageSettings
from nasc.search.space import SearchSpace, build_block
from nasc.signature import BlockSignature

# One space holding every op of the registry at a stride-1 residual layer and a stride-2 layer.
SPACE = SearchSpace(SpaceSettings(resolution=16, stem_channels=16, ops=DEFAULT_OPS,
                                  stages=(StageSettings(16, 1, 1), StageSettings(24, 1, 2))), 10)


def _blocks() -> dict[str, BlockSignature]:
    blocks = {"stem": SPACE.stem_signature(), "head": SPACE.head_signature()}
    for i, layer in enumerate(SPACE.layers()):
        for op in layer.ops:
            if op != "zero":
                blocks[f"{op}-layer{i}-s{layer.stride}"] = layer.signature(op)
    return blocks


BLOCKS = _blocks()


def test_every_registry_op_is_covered() -> None:
    ops = {name.split("-")[0] for name in BLOCKS}
    assert ops == {*DEFAULT_OPS, "stem", "head"} - {"zero"}
    assert {name.split("-")[-1] for name in BLOCKS if name not in ("stem", "head")} == {"s1", "s2"}


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_op_compiles_with_tvm_and_matches_onnxruntime(name: str, tmp_path: Path) -> None:
    sig = BLOCKS[name]
    torch.manual_seed(0)
    module = build_block(sig).eval()
    randomise_batch_norm(module, seed=1)
    exported = export_onnx(module, sig.input_shape(), tmp_path / f"{name}.onnx")
    artifact = compile_onnx(exported.onnx_path, resolve_device("local"), CompileSettings(trials=0, verify_samples=2),
                            tmp_path / "compiled", tmp_path / "cache")
    parity = artifact.parity
    assert parity.checked and parity.passed, parity
    assert parity.max_abs_err is not None and parity.max_abs_err < 1e-3

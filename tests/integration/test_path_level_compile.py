"""Multi-branch (path-level) networks export to ONNX, compile with TVM for `local` and match onnxruntime:
every merge (add, cat, cat_split), every edge op, nested nodes, an edge feeding a node, stride-2 cells,
and a network grown by a chain of function-preserving transformations from a plain one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from batch_norm import randomise_batch_norm

from nasc.compiler.export import export_onnx
from nasc.compiler.settings import CompileSettings
from nasc.devices.registry import resolve_device
from nasc.pipeline.compile import compile_onnx
from nasc.search.path_level.cell import PathArch, parse_cell
from nasc.search.path_level.modules import build_path
from nasc.search.path_level.transforms import branch_add, branch_concat, max_output_change
from nasc.search.settings import SpaceSettings, StageSettings
from nasc.search.space import ArchSpec, SearchSpace, build

# layers: 16->16 (residual), 16->24 stride 2, 24->24 (residual)
SPACE = SearchSpace(SpaceSettings(resolution=16, stem_channels=16, stages=(StageSettings(16, 1, 1),
                                                                            StageSettings(24, 2, 2))), 10)

NETWORKS = {
    "add-cat-pools": ("add(sep3,max3,identity)", "cat(sep5,conv1)", "cat_split(avg3,identity)"),
    "nested": ("cat_split(conv1,add(identity,sep7))", "add(k3_e6,cat_split(sep3,sep5_m2))", "sep3>add(identity,avg3)"),
    "chains": ("conv1>sep3_m2", "sep5>cat_split(identity,conv1)", "zero"),
}


def _compile_and_check(module: torch.nn.Module, name: str, tmp_path: Path) -> None:
    exported = export_onnx(module.eval(), SPACE.input_shape(), tmp_path / f"{name}.onnx")
    artifact = compile_onnx(exported.onnx_path, resolve_device("local"), CompileSettings(trials=0, verify_samples=2),
                            tmp_path / "compiled", tmp_path / "cache")
    parity = artifact.parity
    assert parity.checked and parity.passed, parity
    assert parity.max_abs_err is not None and parity.max_abs_err < 1e-3


def test_the_networks_cover_every_merge_and_edge_op() -> None:
    ops, merges = set(), set()
    for cells in NETWORKS.values():
        for text in cells:
            ops.update(part.split("(")[-1] for part in text.replace(")", "").replace(">", ",").split(","))
            merges.update(word for word in ("add(", "cat(", "cat_split(") if word in text)
    assert {"sep3", "sep5", "sep7", "sep5_m2", "conv1", "identity", "max3", "avg3", "k3_e6", "zero"} <= ops
    assert merges == {"add(", "cat(", "cat_split("}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_multi_branch_network_compiles_and_matches_onnxruntime(name: str, tmp_path: Path) -> None:
    arch = PathArch.from_strings(SPACE, NETWORKS[name])
    torch.manual_seed(0)
    network = build_path(arch)
    randomise_batch_norm(network, seed=1)
    _compile_and_check(network, name, tmp_path)


def test_a_transformed_network_compiles_and_matches_onnxruntime(tmp_path: Path) -> None:
    plain = ArchSpec(SPACE, ("k3_e3", "k5_e6", "k3_e6"))
    torch.manual_seed(0)
    network = build(plain)
    randomise_batch_norm(network, seed=2)
    arch, current = PathArch.from_arch(plain), network
    for step in (lambda a, n: branch_add(a, n, layer=0, edge=0, copies=2),
                 lambda a, n: branch_concat(a, n, layer=1, edge=0, parts=2),
                 lambda a, n: branch_add(a, n, layer=2, edge=0, copies=3)):
        done = step(arch, current)
        arch, current = done.arch, done.network
    assert arch.cell_strings() == ["add(k3_e3,k3_e3)", "cat(k5_e6,k5_e6)", "add(k3_e6,k3_e6,k3_e6)"]
    assert [str(parse_cell(text)) for text in arch.cell_strings()] == arch.cell_strings()
    inputs = [torch.randn(SPACE.input_shape(2), generator=torch.Generator().manual_seed(3))]
    assert max_output_change(network, current, inputs) <= 1e-5
    _compile_and_check(current, "transformed", tmp_path)

"""Equivalent encodings (NAO's augmentation): moving skips within a run of same-shaped residual layers keeps the
network; checked against the blocks the network runs and against the built torch network itself."""

from __future__ import annotations

import torch

from nasc.search.nao.equivalent import canonical, equivalents, interchangeable_runs
from nasc.search.settings import SpaceSettings, StageSettings
from nasc.search.space import ArchSpec, SearchSpace, build

SPACE = SearchSpace(SpaceSettings(resolution=8, in_channels=1, stem_channels=8, stem_stride=1, head_expand=2,
                                  ops=("k3_e3", "k5_e3", "zero"),
                                  stages=(StageSettings(8, 3, 1), StageSettings(16, 3, 2))), num_classes=3)


def test_runs_are_the_same_shaped_residual_layers() -> None:
    # stage 1: all three layers residual 8->8 (the stem has 8 channels); stage 2: its first layer strides
    assert [list(r) for r in interchangeable_runs(SPACE.layers())] == [[0, 1, 2], [4, 5]]
    default = SearchSpace(SpaceSettings(), num_classes=10)
    assert interchangeable_runs(default.layers()) == []  # depth-2 stages: nothing to move


def test_equivalents_run_the_same_blocks_and_the_same_function() -> None:
    runs = interchangeable_runs(SPACE.layers())
    ops = ("k3_e3", "zero", "k5_e3", "k3_e3", "zero", "k5_e3")
    found = equivalents(ops, runs, limit=50)
    assert len(found) == 3 * 2 - 1 and ops not in found  # C(3,2) placements x C(2,1), less itself
    assert len({canonical(e, runs) for e in [ops, *found]}) == 1
    torch.manual_seed(0)
    reference = build(ArchSpec(SPACE, ops)).eval()
    x = torch.randn(2, 1, 8, 8)
    for other in found:
        arch = ArchSpec(SPACE, other)
        assert arch.blocks() == ArchSpec(SPACE, ops).blocks()
        net = build(arch).eval()
        # carry the weights over layer by layer in the order of the non-skipped ops
        net.stem.load_state_dict(reference.stem.state_dict())
        net.head.load_state_dict(reference.head.state_dict())
        src = [layer for layer, op in zip(reference.layers, ops, strict=True) if op != "zero"]
        dst = [layer for layer, op in zip(net.layers, other, strict=True) if op != "zero"]
        for a, b in zip(src, dst, strict=True):
            b.load_state_dict(a.state_dict())
        torch.testing.assert_close(net(x), reference(x))
    assert canonical(ops, runs) == ("k3_e3", "k5_e3", "zero", "k3_e3", "k5_e3", "zero")
    assert equivalents(("k3_e3",) * 6, runs) == []  # no skip, nothing to move

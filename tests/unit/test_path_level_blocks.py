"""A path-level network as latency-table blocks: plain cells share the ArchSpec entries, other cells get
a block of their own whose module (the table's factory) computes what the cell computes in the network."""

from __future__ import annotations

import pytest
import torch

from nasc.search.path_level.blocks import build_path_block
from nasc.search.path_level.cell import PathArch
from nasc.search.path_level.modules import build_path
from nasc.search.settings import SpaceSettings, StageSettings
from nasc.search.space import ArchSpec, SearchSpace
from nasc.signature import BlockSignature

SPACE = SearchSpace(SpaceSettings(resolution=8, stem_channels=8, stem_stride=1, head_expand=2,
                                  stages=(StageSettings(8, depth=2, stride=1), StageSettings(16, depth=1, stride=2))),
                    num_classes=4)  # layers: 8->8 (residual), 8->8 (residual), 8->16 stride 2


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_a_plain_network_has_the_blocks_of_its_archspec() -> None:
    arch = ArchSpec(SPACE, ("k3_e3", "zero", "k5_e6"))
    assert PathArch.from_arch(arch).blocks() == arch.blocks()


def test_a_multi_branch_cell_is_a_cell_block_keyed_by_its_string() -> None:
    arch = PathArch.from_strings(SPACE, ["add(sep3,identity)", "k3_e3", "cat(conv1,sep5)"])
    blocks = arch.blocks()
    assert [b.op for b in blocks] == ["stem", "cell", "mbconv", "cell", "head"]
    first, last = blocks[1], blocks[3]
    assert (first.cell, first.idskip, first.stride) == ("add(sep3,identity)", True, 1)
    assert (last.cell, last.idskip, last.stride, last.out_channels) == ("cat(conv1,sep5)", False, 2, 16)
    assert BlockSignature.parse(last.key()) == last


def test_the_block_module_computes_what_the_cell_computes_in_the_network() -> None:
    arch = PathArch.from_strings(SPACE, ["add(sep3,identity)", "zero", "sep3>cat_split(identity,max3)"])
    torch.manual_seed(0)
    network = build_path(arch).eval()
    block_of_layer = {0: arch.blocks()[1], 2: arch.blocks()[2]}  # the zero layer has no block
    with torch.no_grad():
        features = network.stem(torch.randn(SPACE.input_shape(2)))
        for index, layer in enumerate(network.layers):
            if index in block_of_layer:
                block = build_path_block(block_of_layer[index]).eval()
                block.load_state_dict(layer.state_dict())
                assert torch.equal(block(features), layer(features))
            features = layer(features)

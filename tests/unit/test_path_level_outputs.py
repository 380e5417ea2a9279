"""A path-level network is read back from a search folder like an ArchSpec one: arch.json by its format
key, model.pt into the rebuilt cells, and a bad file names itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nasc.errors import InputError
from nasc.search.outputs import arch_from_dict, load_arch, load_trained
from nasc.search.path_level.cell import PathArch
from nasc.search.path_level.transforms import branch_add, branch_concat, max_output_change
from nasc.search.settings import SpaceSettings, StageSettings
from nasc.search.space import ArchSpec, SearchSpace, build

SPACE = SearchSpace(SpaceSettings(resolution=8, stem_channels=8, stem_stride=1, head_expand=2,
                                  stages=(StageSettings(8, depth=1, stride=1), StageSettings(16, depth=1, stride=2))),
                    num_classes=4)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_a_transformed_network_is_read_back_from_its_folder(tmp_path: Path) -> None:
    plain = ArchSpec(SPACE, ("k3_e3", "k5_e3"))
    torch.manual_seed(0)
    start = build(plain).eval()
    grown = branch_add(PathArch.from_arch(plain), start, layer=0, edge=0, copies=2)
    grown = branch_concat(grown.arch, grown.network, layer=1, edge=0, parts=2)
    (tmp_path / "arch.json").write_text(json.dumps(grown.arch.to_dict()))
    torch.save(grown.network.state_dict(), tmp_path / "model.pt")

    arch, network = load_trained(tmp_path)
    assert isinstance(arch, PathArch) and arch == grown.arch
    assert not network.training
    assert max_output_change(grown.network, network, [torch.randn(SPACE.input_shape(2))]) == 0.0
    assert max_output_change(start, network, [torch.randn(SPACE.input_shape(2))]) <= 1e-5


def test_an_archspec_file_still_reads_as_an_archspec(tmp_path: Path) -> None:
    arch = ArchSpec(SPACE, ("zero", "k5_e3"))
    (tmp_path / "arch.json").write_text(json.dumps(arch.to_dict()))
    assert load_arch(tmp_path / "arch.json") == arch
    assert arch_from_dict(PathArch.from_arch(arch).to_dict(), "x") == PathArch.from_arch(arch)


def test_a_bad_path_level_file_names_itself_and_the_cell(tmp_path: Path) -> None:
    data = PathArch.from_strings(SPACE, ["add(sep3,identity)", "k5_e3"]).to_dict()
    data["cells"][0]["branches"][1]["op"] = "conv2"
    (tmp_path / "arch.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"arch\.json.*conv2"):
        load_arch(tmp_path / "arch.json")

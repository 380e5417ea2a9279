"""`--start`: a search's arch.json (or its folder) becomes the line of cells the path-level search grows;
any other value is a start setting as build.toml writes it; a file that is no arch.json names itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nasc.errors import InputError
from nasc.search.path_level.cell import PathArch
from nasc.search.path_level.start import start_arch, start_setting
from nasc.search.settings import SpaceSettings, StageSettings
from nasc.search.space import ArchSpec, SearchSpace

SPACE = SearchSpace(SpaceSettings(resolution=8, stem_channels=8, stem_stride=1, head_expand=2,
                                  stages=(StageSettings(8, depth=2, stride=1), StageSettings(16, depth=1, stride=2))),
                    num_classes=4)


def test_a_proxyless_result_folder_starts_the_same_network(tmp_path: Path) -> None:
    arch = ArchSpec(SPACE, ("k5_e6", "zero", "k3_e3"))
    (tmp_path / "arch.json").write_text(json.dumps(arch.to_dict()))
    for value in (str(tmp_path), str(tmp_path / "arch.json")):
        assert start_setting(value) == "k5_e6 zero k3_e3"
        assert start_arch(SPACE, start_setting(value)) == PathArch.from_arch(arch)


def test_a_grown_network_starts_from_its_cells(tmp_path: Path) -> None:
    grown = PathArch.from_strings(SPACE, ["add(sep3,identity)", "k3_e3", "cat(conv1,sep5)"])
    (tmp_path / "arch.json").write_text(json.dumps(grown.to_dict()))
    assert start_arch(SPACE, start_setting(str(tmp_path))) == grown


def test_other_values_are_start_settings_and_a_bad_file_names_itself(tmp_path: Path) -> None:
    assert start_setting("mobilenetv2") == "mobilenetv2"
    assert start_setting("uniform:k3_e3") == "uniform:k3_e3"
    (tmp_path / "arch.json").write_text("{}")
    with pytest.raises(InputError, match=r"arch\.json"):
        start_setting(str(tmp_path))

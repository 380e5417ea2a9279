"""New path-level cells are measured on the device when a search first asks for them: MeasuringPredictor on
`local` (a real table from `nasc lut build`, a real RPC server) times a network's unknown cell blocks, stores
them in the SQLite table under their cell strings, and answers the next ask (from a fresh predictor too)
without measuring again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_project import tiny_project

from nasc.compiler.toolchain import table_toolchain
from nasc.devices.latency_table import LatencyTable
from nasc.pipeline.cell_latency import MeasuringPredictor
from nasc.pipeline.config import load_config
from nasc.search.path_level.cell import PathArch
from nasc.search.runtime import search_space

NASC = [str(Path(sys.executable).parent / "nasc")]
MEASURE = "[measure]\nwarmup = 1\nnumber = 3\nrepeat = 5\npasses = 1\n"


def test_new_cells_are_measured_once_and_stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "build.toml").write_text(tiny_project(extra=MEASURE))
    env = {**os.environ, "NASC_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([*NASC, "lut", "build", "--device", "local"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    monkeypatch.setenv("NASC_CACHE_DIR", env["NASC_CACHE_DIR"])
    config = load_config(tmp_path / "build.toml")
    device = config.device("local")
    space = search_space(config.search, config.data, config.base_dir)
    plain = PathArch.from_strings(space, ["k3_e3", "zero", "k5_e3"])
    grown = PathArch.from_strings(space, ["add(sep3,identity)", "zero", "cat(conv1,sep5)"])
    predictor = MeasuringPredictor(config, device)
    plain_ms = predictor.network_ms(plain.blocks())
    assert predictor.measured == []  # the table had every block of the plain network

    grown_ms = predictor.network_ms(grown.blocks())
    cells = [b for b in grown.blocks() if b.op == "cell"]
    assert sorted(predictor.measured) == sorted(b.key() for b in cells)
    assert grown_ms > 0 and plain_ms > 0
    with LatencyTable.in_cache(config.cache_dir(), table_toolchain(0, device.threads)) as table:
        stored = {e.key.block: e.median_ms for e in table.entries(device, current_tvm_only=True)}
    for cell in cells:
        assert cell.key() in stored and stored[cell.key()] > 0
        assert predictor.block_ms(cell) == stored[cell.key()]

    again = MeasuringPredictor(config, device)
    assert again.network_ms(grown.blocks()) == grown_ms
    assert again.measured == []

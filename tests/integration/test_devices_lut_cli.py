"""`nasc lut build` / `nasc lut show` end to end on `local` with a tiny search space (real server, real builds)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from nasc.cli import main

TINY = """
[project]
cache_dir = "cache"
[measure]
warmup = 1
number = 5
repeat = 10
[search.space]
resolution = 8
stem_channels = 8
head_expand = 1
ops = ["k3_e1", "k5_e2", "zero"]
[[search.space.stages]]
channels = 8
depth = 1
stride = 1
"""


def test_lut_build_resume_and_show(tmp_path: Path) -> None:
    project = tmp_path / "build.toml"
    project.write_text(TINY)
    runner = CliRunner()
    first = runner.invoke(main, ["--config", str(project), "lut", "build", "--device", "local"])
    assert first.exit_code == 0, first.output
    assert "4 blocks, 0 already in the table, 4 measured" in first.output
    again = runner.invoke(main, ["--config", str(project), "lut", "build", "--device", "local"])
    assert again.exit_code == 0, again.output
    assert "4 blocks, 4 already in the table, 0 measured" in again.output
    shown = runner.invoke(main, ["--config", str(project), "lut", "show", "--device", "local", "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    blocks = sorted(e["key"]["block"].split("-")[0] for e in data["entries"])
    assert blocks == ["head", "mbconv", "mbconv", "stem"]
    for entry in data["entries"]:
        m = entry["measurement"]
        # [measure] passes (3 by default): each block timed once per pass over the space, 10 repeats each; the
        # median of the three pass medians is the entry
        assert m["median_ms"] > 0 and m["repeat"] == 30 and m["number"] == 5 and m["device"] == "local"
        passes = m["extra"]["pass_medians_ms"]
        assert len(passes) == 3 and m["median_ms"] == sorted(passes)[1]
    assert Path(data["table"]) == tmp_path / "cache" / "latency.sqlite"
    table = runner.invoke(main, ["--config", str(project), "lut", "show"])
    assert table.exit_code == 0, table.output
    assert table.output.count("mbconv-") == 2 and "stem-" in table.output and "head-" in table.output, table.output

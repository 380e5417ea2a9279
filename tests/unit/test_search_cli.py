"""`nasc search` refuses cleanly, with the fix, when it cannot run (no table, bad device, bad flags)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from nasc.cli import main
from nasc.errors import ConfigError


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NASC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # the embedded default project
    return tmp_path / "cache"


def test_search_without_a_latency_table_tells_how_to_build_one(cache: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["search", "--device", "local", "-o", str(tmp_path / "out")])
    assert result.exit_code == 13, result.output
    assert "nasc lut build --device local" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out" / "arch.json").exists()


def test_search_on_an_unknown_device_is_refused(cache: Path) -> None:
    result = CliRunner().invoke(main, ["search", "--device", "toaster"])
    assert result.exit_code == 4, result.output
    assert "toaster" in result.output


@pytest.mark.parametrize(("args", "section"), [(["--latency-ms", "0"], "[search]"),
                                               (["--set", "epochs=-1"], "[search.proxyless]"),
                                               (["--set", "no_such_key=1"], "[search.proxyless]"),
                                               (["--strategy", "path-level", "--set", "rounds=-1"],
                                                "[search.path_level] rounds must be >= 0"),
                                               (["--strategy", "path-level", "--set", "epochs=3"],
                                                "[search.path_level] has no key 'epochs'")])
def test_bad_flag_values_are_config_errors(cache: Path, args: list[str], section: str) -> None:
    result = CliRunner().invoke(main, ["search", *args])
    assert result.exit_code == ConfigError.exit_code, result.output
    assert ConfigError.exit_code != 2  # click's own usage errors exit 2
    assert section in result.output


def test_every_registered_strategy_is_offered(cache: Path) -> None:
    result = CliRunner().invoke(main, ["search", "--help"])
    assert result.exit_code == 0, result.output
    assert "nao|path-level|proxyless|random" in result.output

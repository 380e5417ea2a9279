"""build.toml parsing: typed values, and errors that name the file and the dotted key."""

from __future__ import annotations

from pathlib import Path

import pytest

from nasc.errors import ConfigError, UnknownDevice
from nasc.pipeline.config import Config, embedded_default_text, load_config, parse_config


def test_embedded_default_parses_and_names_local() -> None:
    config = parse_config(embedded_default_text(), "default.toml")
    assert config.project.device == "local"
    assert config.device().name == "local"
    assert config.device().target["kind"] == "llvm"
    assert config.device().target["mcpu"] != "native"


def test_repository_build_toml_parses() -> None:
    config = load_config(Path(__file__).parents[2] / "build.toml")
    assert config.device("my-pi").connection.key == "my-pi"
    assert config.device("my-pi").cross_compiler == "aarch64-linux-gnu-g++"


def test_repository_build_toml_runs_the_embedded_default_job() -> None:
    # The README's first command runs in a checkout, where this example is the project file: it must
    # search, compile and measure as the embedded default does (a budget, the data, the space).
    example = load_config(Path(__file__).parents[2] / "build.toml")
    default = parse_config(embedded_default_text(), "default.toml")
    assert (example.project.device, example.search, example.data, example.compile, example.measure) == (
        default.project.device, default.search, default.data, default.compile, default.measure)


def test_values_are_typed() -> None:
    config = parse_config("[compile]\ntrials = 8\natol = 1\n", "p.toml")
    assert config.compile.trials == 8
    assert isinstance(config.compile.atol, float)


@pytest.mark.parametrize(
    ("text", "key", "hint"),
    [
        ("[compile]\ntrials = 'many'\n", "compile.trials", "expected an integer"),
        ("[compile]\ntrialz = 3\n", "compile.trialz", "unknown key"),
        ("[projekt]\nname = 'x'\n", "projekt", "unknown key"),
        ("[compile]\ntrials = -1\n", "compile", "trials must be >= 0"),
        ("[compile]\nopset = 13\n", "compile", "opset must be >= 17"),
        ("[project]\nname = 3\n", "project.name", "expected a string"),
        ("[devices.x]\nconnection = 'local'\n", "devices.x.target", "missing"),
        ("[devices.x]\nbase = 'rpi4'\nconnection = 'tracker://h:1'\n", "devices.x.connection", "KEY"),
        ("[devices.x]\nbase = 'rpi4'\ncolour = 'red'\n", "devices.x.colour", "unknown key"),
    ],
)
def test_errors_name_file_and_key(text: str, key: str, hint: str) -> None:
    with pytest.raises((ConfigError, UnknownDevice)) as info:
        parse_config(text, "proj/build.toml")
    message = str(info.value)
    assert "proj/build.toml" in message
    assert key in message
    assert hint in message


def test_not_toml_is_refused_with_file_name() -> None:
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        parse_config("[compile\n", "bad.toml")


def test_unknown_device_lists_known_ones() -> None:
    config = Config()
    with pytest.raises(UnknownDevice) as info:
        config.device("pi5")
    assert "rpi4" in str(info.value) and "local" in str(info.value) and "[devices.pi5]" in str(info.value)


def test_device_table_overrides_builtin() -> None:
    text = "[devices.lab-pi]\nbase = 'rpi4'\nconnection = 'rpc://10.1.2.3:9090'\ndescription = 'bench pi'\n"
    spec = parse_config(text, "b.toml").device("lab-pi")
    assert spec.target == "raspberry-pi/4b-aarch64"
    assert (spec.connection.kind, spec.connection.host, spec.connection.port) == ("rpc", "10.1.2.3", 9090)
    assert spec.description == "bench pi"


def test_cli_override_replaces_one_field() -> None:
    config = parse_config("[compile]\ntrials = 8\nopset = 18\n", "b.toml")
    overridden = config.with_section("compile", trials=0, opset=None)
    assert overridden.compile.trials == 0 and overridden.compile.opset == 18
    with pytest.raises(ConfigError, match="trials must be >= 0"):
        config.with_section("compile", trials=-3)


def test_missing_project_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: no such project file"):
        load_config(tmp_path / "nope.toml")


def test_relative_paths_resolve_against_project_folder(tmp_path: Path) -> None:
    (tmp_path / "build.toml").write_text("[project]\noutput_dir = 'artifacts'\ncache_dir = 'c'\n")
    config = load_config(tmp_path / "build.toml")
    assert config.output_dir() == tmp_path / "artifacts"
    assert config.cache_dir() == tmp_path / "c"


def test_a_flag_setting_an_unknown_key_of_a_strategy_table_names_the_table_and_its_keys() -> None:
    config = load_config(None)
    with pytest.raises(ConfigError, match=r"\[search.random\] has no key 'seeds'; its keys are .*new_per_round"):
        config.with_section("search.random", seeds=3)
    assert config.with_section("search.nao", seeds=3).search.nao.seeds == 3
    with pytest.raises(ConfigError, match=r"\[search.nao\] trade_off must be in \[0, 1\]"):
        config.with_section("search.nao", trade_off=2.0)

"""The CLI behaves the same for every verb: unique exit codes clear of click's usage error, one line for
an unexpected failure (traceback only with --debug or NASC_DEBUG=1), --json on every verb with a result."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from nasc import errors
from nasc.cli import main


def _subclasses(cls: type) -> list[type]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]


def test_every_error_class_has_its_own_exit_code_and_none_is_clicks() -> None:
    classes = [errors.NascError, *_subclasses(errors.NascError)]
    codes = [c.exit_code for c in classes]
    assert len(classes) > 10 and len(set(codes)) == len(codes), {c.__name__: c.exit_code for c in classes}
    reserved = {0, 2, errors.UNEXPECTED_EXIT, errors.INTERRUPTED_EXIT}  # 2: click's usage errors
    assert not reserved & set(codes)


def _boom(*args: object, **kwargs: object) -> None:
    raise RuntimeError("the disk caught fire\nsecond line")


@pytest.mark.parametrize("debug", [False, True])
def test_an_unexpected_failure_is_one_line_unless_debugging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            debug: bool) -> None:
    monkeypatch.setattr("nasc.cli.search.export_search", _boom)
    monkeypatch.setenv("NASC_DEBUG", "1" if debug else "0")
    result = CliRunner().invoke(main, ["export", str(tmp_path)])
    assert result.exit_code == errors.UNEXPECTED_EXIT, result.output
    assert "RuntimeError: second line" in result.output and "nasc export" in result.output
    assert ("Traceback" in result.output) == debug
    if not debug:
        assert "run again with --debug (or NASC_DEBUG=1)" in result.output


def test_every_verb_that_reports_a_result_takes_json() -> None:
    without = {"devices emulate", "lut"}  # a server that runs until Ctrl-C; a group
    missing = []

    def walk(command: click.Command, path: str) -> None:
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, f"{path} {name}".strip())
        if path and path not in without and "--json" not in {o for p in command.params for o in p.opts}:
            missing.append(path)

    walk(main, "")
    assert missing == []


def test_a_search_folder_that_is_not_there_is_named(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export", str(tmp_path / "nowhere"), "--json"])
    assert result.exit_code == errors.InputError.exit_code
    assert "nowhere" in result.output and "nasc search" in result.output


def test_devices_in_a_pipe_keeps_every_name_whole() -> None:
    result = CliRunner().invoke(main, ["devices"], env={"COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    names = [line.split()[0] for line in result.output.splitlines() if line.strip()]
    assert {"jetson-orin-nano", "rpi4-emulated", "android-arm64", "local"} <= set(names)
    data = json.loads(CliRunner().invoke(main, ["devices", "--json"]).output)
    assert {d["name"] for d in data["devices"]} >= set(names)

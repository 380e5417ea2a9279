"""The resume logic of search-and-compile: stage records, the driver's reuse / rerun decisions, bundle names.

The driver is exercised with stand-in stages that write small files (logic only; the real stages run in
tests/integration/test_search_and_compile.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nasc.devices.registry import resolve_device
from nasc.pipeline.config import load_config
from nasc.pipeline.search_and_compile import STAGES, PipelineRequest, _Run, bundle_name
from nasc.pipeline.stages import StageBook, StageRecord, digest, files_digest


def test_digest_is_canonical_and_content_sensitive() -> None:
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})


def test_files_digest_sees_content_and_absence(tmp_path: Path) -> None:
    f = tmp_path / "x.bin"
    missing = files_digest([f])
    f.write_bytes(b"one")
    one = files_digest([f])
    f.write_bytes(b"two")
    assert len({missing, one, files_digest([f])}) == 3


def test_stage_book_round_trip_and_unreadable_record(tmp_path: Path) -> None:
    book = StageBook(tmp_path)
    assert book.read("lut") is None and not book.any_done()
    book.write(StageRecord("lut", "started", "abc", {"k": 1}))
    assert book.read("lut") == StageRecord("lut", "started", "abc", {"k": 1}) and not book.any_done()
    book.write(StageRecord("lut", "done", "abc", {"k": 1}, "def", {"n": 2}, 1.5))
    assert book.read("lut").state == "done" and book.any_done()  # type: ignore[union-attr]
    book.path("lut").write_text("{ not json")
    assert book.read("lut") is None  # an unreadable record: the stage runs again


@pytest.mark.parametrize(("project", "device", "name"), [
    ("digits-local", "local", "digits-local.tar.gz"),
    ("digits", "rpi4-emulated", "digits-rpi4-emulated.tar.gz"),
    ("my-local-net", "local", "my-local-net-local.tar.gz"),
])
def test_bundle_name_names_the_device_once(project: str, device: str, name: str) -> None:
    assert bundle_name(project, device) == name


class _Stages:
    """Stand-in stages: each writes NAME.txt from its inputs; `calls` says which ran and how."""

    def __init__(self, out: Path, resume: bool) -> None:
        request = PipelineRequest(load_config(None), resolve_device("local"), out, resume=resume)
        self.run = _Run(request, lambda _event: None)
        self.out = out
        self.calls: list[tuple[str, bool]] = []

    def do(self, name: str, inputs: dict[str, Any]) -> str:
        path = self.out / f"{name}.txt"

        def run(continuing: bool) -> tuple[str, dict[str, Any]]:
            self.calls.append((name, continuing))
            path.write_text(repr(inputs))
            return path.read_text(), {}

        return self.run.stage(name, inputs, run, path.read_text, lambda: [path])

    def all(self, settings: dict[str, dict[str, Any]]) -> list[str]:
        for name in STAGES:
            self.do(name, settings.get(name, {}))
        return [name for name, _ in self.calls]


def test_without_resume_every_stage_runs(tmp_path: Path) -> None:
    assert _Stages(tmp_path, resume=False).all({}) == list(STAGES)
    assert _Stages(tmp_path, resume=False).all({}) == list(STAGES)


def test_resume_reuses_unchanged_and_reruns_from_the_first_change(tmp_path: Path) -> None:
    _Stages(tmp_path, resume=False).all({})
    reused = _Stages(tmp_path, resume=True)
    assert reused.all({}) == []
    assert [(s.name, s.status) for s in reused.run.stage_runs] == [(name, "reused") for name in STAGES]
    changed = _Stages(tmp_path, resume=True).all({"compile": {"trials": 8}})
    assert changed == list(STAGES[STAGES.index("compile"):])
    assert _Stages(tmp_path, resume=True).all({"compile": {"trials": 8}}) == []


def test_resume_reruns_a_stage_whose_output_was_changed_and_everything_after(tmp_path: Path) -> None:
    _Stages(tmp_path, resume=False).all({})
    (tmp_path / "export.txt").write_text("edited by hand")
    assert _Stages(tmp_path, resume=True).all({}) == list(STAGES[STAGES.index("export"):])


def test_a_started_stage_with_the_same_inputs_continues(tmp_path: Path) -> None:
    stages = _Stages(tmp_path, resume=False)
    stages.do("lut", {})
    inputs = {"epochs": 3}
    # The search was killed: its record says started, with these inputs.
    stages.run.book.write(StageRecord("search", "started", digest({**inputs, "versions": _versions()}), inputs))
    again = _Stages(tmp_path, resume=True)
    again.do("lut", {})
    again.do("search", inputs)
    assert again.calls == [("search", True)]
    other = _Stages(tmp_path, resume=True)
    other.run.book.write(StageRecord("search", "started", "another-inputs-hash", {}))
    other.do("lut", {})
    other.do("search", inputs)
    assert other.calls == [("search", False)]  # other inputs: start afresh, not from that checkpoint


def _versions() -> dict[str, str]:
    from nasc.pipeline.search_and_compile import _versions as versions

    return versions()

"""report.html of a real run folder: search-and-compile on the tiny project on `local` (its table tuned at
one trial per task, the final compile at two, so the tuning curve has events and the table's untuned and
tuned views are both there), opened in headless Chromium as a person would; and a report missing its
budget, measurement and tuning, which still renders and says why."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import pytest
from report_browser import browser_problems
from tiny_project import tiny_project

from nasc.compiler.tune import TuningSummary
from nasc.pipeline.config import load_config
from nasc.pipeline.report import (
    ReportInputs,
    load_report_inputs,
    render_report,
    summary_from_records,
    write_report,
)
from nasc.pipeline.search_and_compile import PipelineRequest, search_and_compile

# The table tuned at one trial per task, the final compile at two: the compile still spends trials (tuning
# events for its curve); its own cache (a shared NASC_TEST_CACHE_DIR would hold the tasks tuned already).
TABLE_TRIALS = 1
RUN_SETTINGS = """
[project]
cache_dir = "cache"
[measure]
warmup = 2
number = 5
repeat = 10
[compile]
trials = 2
"""
# NASC_REPORT_SCREENSHOT=PATH keeps a full-page screenshot of the complete report there (to look at it).
SCREENSHOT_ENV = "NASC_REPORT_SCREENSHOT"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[tuple[str, str, float], ...]]:
    """DIR of a real search-and-compile run (search/, export/, compile/ + measure.json, bundle/, lut/,
    events.jsonl); and its stage facts (name, "ran", seconds)."""
    root = tmp_path_factory.mktemp("report-project")
    (root / "build.toml").write_text(tiny_project(final_epochs=2, table_trials=TABLE_TRIALS, extra=RUN_SETTINGS))
    config = load_config(root / "build.toml")
    summary = search_and_compile(PipelineRequest(config, config.device("local"), root / "out"))
    return root / "out", tuple((s.name, s.status, s.seconds) for s in summary.stages)


def _images(page: str) -> int:
    return len(re.findall(r"<img\s", page))


def test_the_report_of_a_run_opens_in_a_browser_with_its_plots(run_dir, tmp_path: Path) -> None:
    out, stages = run_dir
    inputs = load_report_inputs(out, None, stages)
    assert inputs.measure is not None and inputs.bundle_path and inputs.bundle_sha256
    assert any(e["stage"] == "tune" and "best_estimate_ms" in e["figures"] for e in inputs.events)
    assert inputs.summary["meets_budget"] is not None and inputs.summary["measured_ms"] > 0
    history = [h for h in inputs.search.history if h["stage"] in ("warmup", "search")]
    assert all(h["derived_ops"] and h["derived_predicted_ms"] > 0 and 0 <= h["derived_valid_accuracy"] <= 1
               for h in history)

    report = write_report(out / "report.html", inputs)
    page = report.read_text()
    assert _images(page) >= 7 and "not available" not in page
    assert inputs.table is not None and inputs.table["table_trials"] == TABLE_TRIALS and inputs.table["untuned_layers"]
    assert inputs.bundle_sha256 in page and inputs.artifact.tvm_version in page
    assert "http://" not in page and "https://" not in page  # opens offline
    screenshot = Path(os.environ[SCREENSHOT_ENV]) if os.environ.get(SCREENSHOT_ENV) else tmp_path / "report.png"
    assert browser_problems(report, screenshot) == []
    assert screenshot.stat().st_size > 10_000


def _bare(inputs: ReportInputs) -> ReportInputs:
    """The same run without a budget, a measurement, tuning, a bundle or stage timings."""
    search = inputs.search
    assert search.result is not None
    result = dataclasses.replace(search.result, budget_ms=None, meets_budget=None)
    search = dataclasses.replace(search, result=result, settings={**search.settings, "latency_ms": None})
    tuning = TuningSummary(database_dir=None, trials_per_task=0)
    artifact = dataclasses.replace(inputs.artifact, tuning=tuning)
    device: dict[str, Any] = {**inputs.device, "name": "<b>board & co</b>", "emulated": True}
    return dataclasses.replace(
        inputs, search=search, artifact=artifact, measure=None, bundle_path=None, bundle_sha256=None, events=(),
        stages=(), device=device, summary=summary_from_records(search, None),
    )


def test_a_report_without_budget_measurement_or_tuning_says_why(run_dir, tmp_path: Path) -> None:
    out, stages = run_dir
    inputs = _bare(load_report_inputs(out, None, stages))
    page = render_report(inputs)
    for reason in ("no budget was set", "not measured on the device", "no tuning ran (trials per task 0)",
                   "nothing was packaged", "no stage timings"):
        assert reason in page, reason
    assert "<b>board" not in page and "&lt;b&gt;board &amp; co&lt;/b&gt;" in page  # every value escaped
    assert "EMULATED device" in page
    report = write_report(tmp_path / "report.html", inputs)
    assert browser_problems(report) == []
    assert _images(page) >= 3  # the candidates, the architecture, the search's progress

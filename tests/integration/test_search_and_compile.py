"""`nasc search-and-compile` as a user runs it, on `local` with tiny budgets: every output, a bundle that
`nasc verify` accepts, a report a browser opens; killed with SIGKILL in the middle of tuning and resumed
(only tuning onwards runs again); a changed --trials reruns compile onwards only."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from report_browser import browser_problems
from tiny_project import tiny_project

NASC = [str(Path(sys.executable).parent / "nasc")]
MEASURE = "[measure]\nwarmup = 2\nnumber = 5\nrepeat = 10\n"
RUN = ["search-and-compile", "--device", "local", "-o", "out/run"]


def _env(folder: Path) -> dict[str, str]:
    # A cache of its own: tuning records of other tests would make the tuning stage too short to interrupt.
    return {**os.environ, "COLUMNS": "200", "NASC_CACHE_DIR": str(folder / "cache")}


def _nasc(folder: Path, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*NASC, *args], cwd=folder, env=_env(folder), capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == expect, f"nasc {' '.join(args)}: exit {result.returncode}\n{result.stdout}\n" \
                                        f"{result.stderr[-4000:]}"
    return result


def _statuses(summary: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in summary["stages"]}


def _tune_events(events: Path) -> int:
    if not events.is_file():
        return 0
    lines = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
    return sum(1 for e in lines if e["stage"] == "tune" and e["total"] and e["step"] > 0)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny project run once with SIGKILL in the middle of tuning, then resumed to the end."""
    folder = tmp_path_factory.mktemp("search-and-compile")
    (folder / "build.toml").write_text(tiny_project(final_epochs=3, extra=MEASURE))
    proc = subprocess.Popen([*NASC, *RUN, "--trials", "6"], cwd=folder, env=_env(folder),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    events = folder / "out/run/events.jsonl"
    deadline = time.monotonic() + 600
    while _tune_events(events) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, f"the run ended before tuning could be interrupted:\n{proc.stderr.read()[-3000:]}"
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and the RPC server it started
    proc.wait(timeout=30)
    proc.stderr.close()
    stages = folder / "out/run/stages"
    assert json.loads((stages / "compile.json").read_text())["state"] == "started"
    assert not (folder / "out/run/compile/compile.json").exists()  # no half-written artifact
    resumed = _nasc(folder, *RUN, "--trials", "6", "--resume", "--json")
    (folder / "resumed.json").write_text(resumed.stdout)
    return folder


def test_resume_after_sigkill_in_tuning_reruns_tuning_onwards(project: Path) -> None:
    summary = json.loads((project / "resumed.json").read_text())
    assert _statuses(summary) == {"lut": "reused", "search": "reused", "export": "reused", "compile": "ran",
                                  "measure": "ran", "package": "ran"}


def test_every_output_and_a_verified_bundle(project: Path) -> None:
    summary = json.loads((project / "resumed.json").read_text())
    run = project / "out/run"
    for name in ("search/arch.json", "search/model.pt", "search/search.json", "export/model.onnx",
                 "compile/model.so", "compile/compile.json", "compile/measure.json", "report.html", "run.json",
                 "events.jsonl"):
        assert (run / name).is_file(), name
    assert summary["parity_passed"] and summary["measured_ms"] > 0 and summary["predicted_ms"] > 0
    assert summary["meets_budget"] == (summary["measured_ms"] <= summary["budget_ms"])
    verified = json.loads(_nasc(project, "verify", summary["bundle"], "--json").stdout)
    manifest = verified["manifest"]
    assert verified["ok"] and verified["files_checked"] >= 4
    bundle = project / summary["bundle"]
    assert hashlib.sha256(bundle.read_bytes()).hexdigest() == summary["bundle_sha256"]
    assert manifest["accuracy"] == summary["test_accuracy"] > 0.1
    assert manifest["latency"]["predicted_ms"] == summary["predicted_ms"]
    assert manifest["latency"]["measured_median_ms"] == summary["measured_ms"]
    assert json.loads((run / "run.json").read_text()) == summary


def test_report_opens_in_a_browser(project: Path) -> None:
    problems = browser_problems(project / "out/run/report.html")
    assert problems == []


def test_resume_with_nothing_changed_reuses_every_stage(project: Path) -> None:
    summary = json.loads(_nasc(project, *RUN, "--trials", "6", "--resume", "--json").stdout)
    assert set(_statuses(summary).values()) == {"reused"}


def test_changed_trials_reruns_compile_onwards_only(project: Path) -> None:
    summary = json.loads(_nasc(project, *RUN, "--trials", "2", "--resume", "--json").stdout)
    assert _statuses(summary) == {"lut": "reused", "search": "reused", "export": "reused", "compile": "ran",
                                  "measure": "ran", "package": "ran"}


def test_unreachable_board_fails_at_second_one(tmp_path: Path) -> None:
    started = time.monotonic()
    result = _nasc(tmp_path, "search-and-compile", "--device", "jetson-nano", expect=8)
    assert time.monotonic() - started < 60
    assert "tracker 127.0.0.1:9190" in result.stderr
    assert "python -m tvm.exec.rpc_server" in result.stderr and "--key jetson-nano" in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("search.json"))


def test_bad_budget_and_missing_data_fail_before_any_work(tmp_path: Path) -> None:
    result = _nasc(tmp_path, *RUN, "--latency-ms", "-1", expect=15)
    assert "latency_ms" in result.stderr
    result = _nasc(tmp_path, *RUN, "--data", "no-such.npz", expect=3)
    assert "no-such.npz" in result.stderr
    assert not (tmp_path / "out/run/stages").exists()

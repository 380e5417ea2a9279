"""A search SIGKILLed twice (mid-search and mid-final-training) and resumed ends identical to an
uninterrupted run with the same seed, losing at most the epoch in flight each time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from tiny_project import tiny_project

TESTS = Path(__file__).resolve().parents[1]

PROJECT = tiny_project(seed=7, epochs=3, final_epochs=3, final_init="inherit")

RUNNER = """
import sys
import torch
torch.set_num_threads(1)
from search_fakes import MacsPredictor
from nasc.pipeline.config import load_config
from nasc.search.runtime import run_search
config = load_config(sys.argv[1])
run_search(config.search, config.data, MacsPredictor(), sys.argv[2], base_dir=config.base_dir,
           resume=sys.argv[3] == "resume")
"""


def _start(project: Path, out: Path, resume: bool) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(TESTS), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(project), str(out), "resume" if resume else "fresh"],
        env=env, stderr=subprocess.PIPE,
    )


def _epochs_done(out: Path) -> int:
    try:
        return len(json.loads((out / "search.json").read_text())["history"])
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def _kill_after(proc: subprocess.Popen[bytes], out: Path, epochs: int, delay_s: float = 0.05) -> int:
    """SIGKILL `proc` while the epoch after `epochs` finished ones is in flight; returns epochs on disk."""
    deadline = time.monotonic() + 240
    while _epochs_done(out) < epochs:
        assert proc.poll() is None, f"search ended early: {proc.stderr.read().decode()[-2000:]}"  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "search made no progress"
        time.sleep(0.05)
    time.sleep(delay_s)  # into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return _epochs_done(out)


def _finish(proc: subprocess.Popen[bytes]) -> None:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]


def test_killed_and_resumed_search_ends_identical(tmp_path: Path) -> None:
    project = tmp_path / "build.toml"
    project.write_text(PROJECT)
    whole, killed = tmp_path / "whole", tmp_path / "killed"

    _finish(_start(project, whole, resume=False))

    on_disk = _kill_after(_start(project, killed, resume=False), killed, epochs=2)
    assert on_disk in (2, 3)  # at most the epoch in flight is lost
    assert not (killed / "arch.json").exists()
    on_disk = _kill_after(_start(project, killed, resume=True), killed, epochs=5, delay_s=0.01)  # 4 search + 1 final
    assert on_disk in (5, 6)
    assert not (killed / "model.pt").exists()
    _finish(_start(project, killed, resume=True))

    a, b = (json.loads((d / "search.json").read_text()) for d in (whole, killed))
    assert b["history"] == a["history"] and len(a["history"]) == 7
    assert [h["stage"] for h in a["history"]] == ["warmup"] + ["search"] * 3 + ["final"] * 3
    a["result"].pop("out_dir"), b["result"].pop("out_dir")
    assert b["result"] == a["result"]
    assert (killed / "arch.json").read_text() == (whole / "arch.json").read_text()
    wa = torch.load(whole / "model.pt", weights_only=True)
    wb = torch.load(killed / "model.pt", weights_only=True)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_fresh_run_into_a_folder_with_an_unfinished_search_is_refused(tmp_path: Path) -> None:
    project = tmp_path / "build.toml"
    project.write_text(PROJECT)
    out = tmp_path / "out"
    _kill_after(_start(project, out, resume=False), out, epochs=1)
    proc = _start(project, out, resume=False)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "pass --resume to continue it" in err.decode()


# A space of 192 networks: a pool of 8 leaves the decoder room to find new ones.
NAO_PROJECT = tiny_project(seed=3, final_epochs=2, extra="""
[search.nao]
warmup_epochs = 1
rounds = 2
epochs_per_round = 1
initial_pool = 8
seeds = 4
new_per_round = 4
epd_epochs = 40
""").replace("[search]\n", '[search]\nstrategy = "nao"\n', 1).replace(
    'ops = ["k3_e3", "k5_e3", "zero"]', 'ops = ["k3_e3", "k5_e3", "k3_e6", "zero"]').replace(
    "{channels = 16, depth = 1, stride = 2}", "{channels = 16, depth = 2, stride = 2}")


def test_nao_killed_between_rounds_and_resumed_ends_identical(tmp_path: Path) -> None:
    project = tmp_path / "build.toml"
    project.write_text(NAO_PROJECT)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    _finish(_start(project, whole, resume=False))
    on_disk = _kill_after(_start(project, killed, resume=False), killed, epochs=2)  # warm-up and round 1 done
    assert on_disk in (2, 3)
    _finish(_start(project, killed, resume=True))

    a, b = (json.loads((d / "search.json").read_text()) for d in (whole, killed))
    assert [h["stage"] for h in a["history"]] == ["warmup", "nao", "nao", "final", "final"]
    rounds = [h["pool_round"] for h in a["history"] if "pool_round" in h]
    assert [r["round"] for r in rounds] == [1, 2] and rounds[-1]["pool_size"] > 8
    assert b["history"] == a["history"]
    a["result"].pop("out_dir"), b["result"].pop("out_dir")
    assert b["result"] == a["result"]
    assert (killed / "arch.json").read_text() == (whole / "arch.json").read_text()


PATH_LEVEL_PROJECT = tiny_project(seed=4, final_epochs=2, extra="""
[search.path_level]
start_epochs = 1
rounds = 3
moves_per_round = 3
finetune_steps = 6
""").replace("[search]\n", '[search]\nstrategy = "path-level"\n', 1)


def test_path_level_killed_between_rounds_and_resumed_ends_identical(tmp_path: Path) -> None:
    project = tmp_path / "build.toml"
    project.write_text(PATH_LEVEL_PROJECT)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    _finish(_start(project, whole, resume=False))
    on_disk = _kill_after(_start(project, killed, resume=False), killed, epochs=2)  # start epoch and round 1 done
    assert on_disk in (2, 3)
    _finish(_start(project, killed, resume=True))

    a, b = (json.loads((d / "search.json").read_text()) for d in (whole, killed))
    assert [h["stage"] for h in a["history"]] == ["warmup"] + ["path-level"] * 3 + ["final"] * 2
    rounds = [h["path_round"] for h in a["history"] if "path_round" in h]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert b["history"] == a["history"]
    a["result"].pop("out_dir"), b["result"].pop("out_dir")
    assert b["result"] == a["result"]
    assert json.loads((whole / "arch.json").read_text())["format"] == "path-level/1"
    assert (killed / "arch.json").read_text() == (whole / "arch.json").read_text()
    wa = torch.load(whole / "model.pt", weights_only=True)
    wb = torch.load(killed / "model.pt", weights_only=True)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)

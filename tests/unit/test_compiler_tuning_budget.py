"""The per-workload tuning budget file: levels, trial counts, old files, broken files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nasc.compiler.tune import trials_per_round
from nasc.compiler.tuning_budget import BUDGET_FILE, TuningBudget, WorkloadBudget
from nasc.errors import CompileError


def test_trials_are_counted_and_levels_only_rise(tmp_path: Path) -> None:
    budget = TuningBudget.load(tmp_path)
    assert budget.get("a") == WorkloadBudget(0, 0)
    budget.set_trials("a", 5)
    budget.set_trials("a", 8)  # a later checkpoint of the same run: the running total
    budget.set_trials("b", 0)
    budget.complete(["a", "b"], 4)
    budget.complete(["a"], 2)  # a smaller run later does not lower the level
    budget.save()
    again = TuningBudget.load(tmp_path)
    assert again.get("a") == WorkloadBudget(level=4, trials=8)
    assert again.get("b") == WorkloadBudget(level=4, trials=0)


def test_files_from_older_versions_load_as_fully_spent(tmp_path: Path) -> None:
    (tmp_path / BUDGET_FILE).write_text(json.dumps({"a": 16}))
    assert TuningBudget.load(tmp_path).get("a") == WorkloadBudget(level=16, trials=16)


@pytest.mark.parametrize("text", ["{not json", '{"a": "many"}', '{"a": {"level": 3}}', "[1, 2]"])
def test_a_broken_file_is_refused_with_its_path_and_the_fix(tmp_path: Path, text: str) -> None:
    (tmp_path / BUDGET_FILE).write_text(text)
    with pytest.raises(CompileError, match=r"trials\.json.*Delete it"):
        TuningBudget.load(tmp_path)


def test_the_first_two_rounds_leave_at_least_a_third_of_the_budget() -> None:
    assert trials_per_round(2 * 30, 30, 32) == 1
    assert trials_per_round(1536, 30, 32) == 17  # squeezenet at 1536: 2 x 17 of its 51 per task
    assert trials_per_round(66 * 23, 23, 32) == 22
    assert trials_per_round(96 * 23, 23, 32) == 32
    assert trials_per_round(3, 30, 32) == 1  # never zero

"""The order in which a tuning run's tasks get their rounds (compiler/task_scheduler.py), driven as
MetaSchedule's tuning loop drives it: pick a task, send its round, join it when the scheduler asks."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from nasc.compiler.task_scheduler import PhasedScheduler, gradient_pick
from nasc.compiler.tuning_focus import FIRST_ROUNDS, ROUNDS_PER_FOCUS_TASK

INF = float("inf")


@dataclass
class FakeTask:
    measure_candidates: list[int] | None = None
    is_terminated: bool = False


@dataclass
class FakeLoop:
    """MetaSchedule's side: the task records, and each task's best time after each round it gets."""

    times: list[list[float]]  # per task: best time after its 1st, 2nd, ... round
    round_size: int = 4
    rounds_left: list[int] | None = None  # per task: rounds until its search space runs out (None: never)
    tasks_: list[FakeTask] = field(default_factory=list)
    history: dict[int, list[float]] = field(default_factory=dict)
    joins: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tasks_ = [FakeTask() for _ in self.times]

    def join_running_task(self, task: int) -> None:
        assert self.tasks_[task].measure_candidates is not None, "joined a task that is not running"
        self.tasks_[task].measure_candidates = None
        done = len(self.history.setdefault(task, []))
        self.history[task].append(self.times[task][min(done, len(self.times[task]) - 1)])
        self.joins.append(task)

    def run(self, weights: list[float], budget: int, focus_trials: int = 0, focus: list[int] | None = None,
            ) -> tuple[PhasedScheduler, list[int], list[int]]:
        """Tune until `budget` candidates are sent; returns the scheduler, the picks and, for each
        pick, how many joins had happened before it."""
        asked: list[int] = []

        def pick_focus() -> list[int]:
            asked.append(len(self.joins))
            return list(focus or [])

        scheduler = PhasedScheduler(weights=weights, history=lambda t: self.history.get(t, []),
                                    total_trials=budget, focus_trials=focus_trials, pick_focus=pick_focus)
        inst = scheduler._inst
        inst._outer = lambda: self
        picks, joins_before = [], []
        sent = 0
        while sent < budget:
            task = inst.next_task_id()
            if task == -1:
                break
            assert not self.tasks_[task].is_terminated
            picks.append(task)
            joins_before.append(len(self.joins))
            left = self.rounds_left[task] if self.rounds_left else None
            if left == 0:
                self.tasks_[task].is_terminated = True  # the search returned nothing: the loop ends the task
                continue
            if left is not None:
                self.rounds_left[task] -= 1
            self.tasks_[task].measure_candidates = [0] * self.round_size
            sent += self.round_size
        inst.asked_focus = asked
        return inst, picks, joins_before


def test_every_task_gets_a_blind_round_then_a_guided_one_before_any_gets_more() -> None:
    assert FIRST_ROUNDS == 2
    loop = FakeLoop(times=[[100e-6, 50e-6], [300e-6, 200e-6], [10e-6, 9e-6]])
    _, picks, joins_before = loop.run(weights=[1, 1, 1], budget=4 * 6)
    assert picks[:6] == [0, 1, 2, 0, 1, 2]
    assert joins_before[:3] == [0, 0, 0]  # blind: nothing is joined, so no round is chosen by a half-fed model
    assert joins_before[3:6] == [3, 4, 5]  # guided: each pick sees every round before it


def test_after_the_first_rounds_the_gradient_rule_picks_by_weight_and_time() -> None:
    # After two rounds: task 1 (200 us) weighs most; task 2 is used 30 times, 30 x 9 us > 200 us.
    loop = FakeLoop(times=[[100e-6, 50e-6], [300e-6, 200e-6], [10e-6, 9e-6]])
    _, picks, _ = loop.run(weights=[1, 1, 30], budget=4 * 7)
    assert picks[6] == 2
    loop = FakeLoop(times=[[100e-6, 50e-6], [300e-6, 200e-6], [10e-6, 9e-6]])
    _, picks, _ = loop.run(weights=[1, 1, 1], budget=4 * 7)
    assert picks[6] == 1


def test_the_focus_phase_gives_its_tasks_their_rounds_then_keeps_to_them() -> None:
    loop = FakeLoop(times=[[100e-6, 50e-6], [300e-6, 200e-6], [10e-6, 9e-6]])
    rounds = 2 * 3 + 1 + ROUNDS_PER_FOCUS_TASK + 2  # first rounds, one gradient round, focus on task 2
    inst, picks, _ = loop.run(weights=[1, 1, 1], budget=4 * rounds, focus_trials=4 * (ROUNDS_PER_FOCUS_TASK + 2),
                              focus=[2])
    assert picks[6] == 1  # gradient: the slowest task
    assert picks[7:] == [2] * (ROUNDS_PER_FOCUS_TASK + 2)  # focus: task 2 only, though task 1 is slower
    assert inst.asked_focus == [7]  # asked once, with every round before it joined


def test_tasks_whose_search_ran_out_are_skipped_and_none_left_ends_the_run() -> None:
    loop = FakeLoop(times=[[100e-6], [300e-6], [10e-6]], rounds_left=[1, 0, 5])
    _, picks, _ = loop.run(weights=[1, 1, 1], budget=4 * 50)
    assert picks[:5] == [0, 1, 2, 0, 2]  # task 1 ended at its first pick, task 0 after its one round
    assert set(picks[5:]) == {2} and len(picks) == 5 + 4  # then task 2 alone, until its space ran out too


@pytest.mark.parametrize(("histories", "weights", "expected"), [
    ({0: [5e-6], 1: [4e-6]}, [1, 1], 0),  # one round each: best / rounds
    ({0: [5e-6, 5e-6], 1: [3e-6]}, [1, 1], 1),  # 5 us over 2 rounds against 3 us over 1
    ({0: [5e-6], 1: [4e-6]}, [1, 2], 1),  # used twice
    ({0: [INF], 1: [1e-9]}, [1, 1], 1),  # nothing valid measured: last
    ({0: [9e-6, 9e-6, 9e-6, 9e-6, 9e-6], 1: [40e-6, 20e-6, 10e-6, 8e-6, 7e-6]}, [1, 1], 1),  # still falling
])
def test_gradient_rule(histories: dict[int, list[float]], weights: list[float], expected: int) -> None:
    assert gradient_pick([0, 1], weights, lambda t: histories[t]) == expected

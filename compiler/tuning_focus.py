"""The focus phase of a tuning run: the last share of the budget goes to the tasks furthest behind.

MetaSchedule's gradient scheduler hands trials out by weight x best latency / rounds so far: it has no
idea how far a task is from what its kind of operator can reach. Small convolutions (squeezenet's
512 -> 64 channel 1x1 squeezes on 13x13 and the like) can sit well below the throughput the big ones
reach after their first rounds while the scheduler keeps giving rounds to the big ones; more trials
on the small ones are what the whole model gains from then. A task's shortfall is measured against
the best throughput any task of the same kind (convolution, depthwise convolution, pooling, ...)
reached in the run, as in Ansor's task scheduler. A task that computes nothing (a copy, a channel
gather, a layout change) is measured by the bytes it moves instead, so a slow copy is found behind
the fastest copy of its kind and gets focus rounds like a slow convolution.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# Share of a run's trials kept for the focus phase (when it is at least two rounds).
FOCUS_SHARE = 0.25
ROUNDS_PER_FOCUS_TASK = 2
# Rounds every task gets before any task gets more (task_scheduler.py). The first is blind: no result
# is processed before every task has had it, so the cost model is untrained and the candidates are a
# random draw. The second is guided by a model trained on every task's first round and seeded with
# the task's own best. The second round is where most tasks gain most (later rounds of a big task
# gain far less), and MetaSchedule's gradient scheduler alone leaves small tasks at their blind
# first round.
FIRST_ROUNDS = 2


@dataclass(frozen=True)
class TaskStanding:
    """One task after the first phase: what it computes and how fast its best schedule runs."""

    index: int
    name: str
    weight: int
    flops: float
    best_secs: float | None
    bytes_moved: float = 0.0

    @property
    def work(self) -> float:
        """What the task's throughput is measured in: its flops, or the bytes it reads and writes when it
        computes nothing (data movement)."""
        return self.flops if self.flops > 0 else self.bytes_moved

    @property
    def kind(self) -> str:
        """The operator kind: the task name without TVM's numbering (conv2d_nchwc3_add2 -> conv2d_nchwc_add)."""
        return re.sub(r"\d+(?=_|$)", "", self.name)


def focus_budget(remaining: int, round_size: int, tasks: int) -> int:
    """Trials kept for the focus phase out of `remaining` over `tasks` tasks: FOCUS_SHARE of them, or
    none when that is less than one focus task's rounds or would leave some task without its
    FIRST_ROUNDS (small budgets go to the first phase whole)."""
    share = int(remaining * FOCUS_SHARE)
    if share < ROUNDS_PER_FOCUS_TASK * round_size or remaining - share < FIRST_ROUNDS * round_size * tasks:
        return 0
    return share


def potential_saving(task: TaskStanding, best_rate: dict[str, float]) -> float:
    """Seconds per model run saved if `task` ran at the best throughput (flops or bytes per second) its
    kind reached (0 if unknown)."""
    rate = best_rate.get(task.kind)
    if not rate or not task.best_secs or task.work <= 0:
        return 0.0
    return max(0.0, task.weight * (task.best_secs - task.work / rate))


def focus_tasks(standings: Sequence[TaskStanding], budget: int, round_size: int) -> list[int]:
    """The tasks the focus phase tunes, most to gain first: ROUNDS_PER_FOCUS_TASK rounds each fit in
    `budget`; tasks already at their kind's best throughput are left out."""
    best_rate: dict[str, float] = {}
    for task in standings:
        if task.best_secs and task.work > 0:
            best_rate[task.kind] = max(best_rate.get(task.kind, 0.0), task.work / task.best_secs)
    saving = {t.index: potential_saving(t, best_rate) for t in standings}
    ranked = sorted((i for i in saving if saving[i] > 0), key=saving.__getitem__, reverse=True)
    return ranked[:max(1, budget // (ROUNDS_PER_FOCUS_TASK * round_size))]

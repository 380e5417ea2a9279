"""The order in which a tuning run's tasks get their rounds: a MetaSchedule task scheduler in phases.

One tune_tasks call runs the whole plan, so every task keeps one search state: MetaSchedule's
evolutionary search remembers only the candidates it measured itself, so a second call on the
same task would spend trials measuring its best records again. The phases:

1. blind: one round per task, all sent before any is joined, so none is chosen by a cost model
   trained on a few tasks only;
2. guided: FIRST_ROUNDS - 1 more rounds per task, each task joined before the next is picked, so
   every round is chosen by a model trained on all the results so far;
3. gradient: MetaSchedule's gradient rule (Ansor's: weight x (recent gain and best / rounds));
4. focus: the last `focus_trials` go to the tasks `pick_focus` names (tuning_focus.py),
   ROUNDS_PER_FOCUS_TASK rounds each, then the gradient rule among them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.task_scheduler import PyTaskScheduler

from .tuning_focus import FIRST_ROUNDS, ROUNDS_PER_FOCUS_TASK

ALPHA = 0.2  # weight of the recent gain in the gradient rule (MetaSchedule's default)
WINDOW = 3  # rounds over which the recent gain is taken (MetaSchedule's default)


def gradient_pick(alive: Sequence[int], weights: Sequence[float], history: Callable[[int], list[float]]) -> int:
    """MetaSchedule's gradient rule: the task in `alive` with the largest weight x (ALPHA x its best's
    fall over the last WINDOW rounds / WINDOW + (1 - ALPHA) x best / rounds). `history(task)` is the
    task's best time after each of its rounds (inf while nothing has run); tasks with no valid time
    come last. Ties go to the first."""
    def gradient(task: int) -> float:
        best_after = history(task)
        rounds = len(best_after)
        if not rounds or best_after[-1] == float("inf"):
            return float("-inf")
        best = best_after[-1]
        recent = (best_after[-1 - WINDOW] - best) / WINDOW if rounds > WINDOW else 0.0
        if recent == float("inf"):
            recent = 0.0
        return weights[task] * (ALPHA * recent + (1 - ALPHA) * best / rounds)

    return max(alive, key=gradient)


@derived_object
class PhasedScheduler(PyTaskScheduler):
    """Blind rounds, guided rounds, the gradient rule, then the focus phase (see the module's doc).

    `history(task)` gives a task's best time after each of its joined rounds (the run's measure
    callback keeps it); `pick_focus()` names the focus tasks when the focus phase starts.
    """

    def __init__(self, weights: Sequence[float], history: Callable[[int], list[float]], total_trials: int,
                 focus_trials: int, pick_focus: Callable[[], list[int]]) -> None:
        super().__init__()
        self.weights = list(weights)
        self.history = history
        self.focus_from = total_trials - focus_trials if focus_trials > 0 else None
        self.pick_focus = pick_focus
        self.phase = "blind"
        self.queue: list[int] = list(range(len(self.weights)))
        self.guided_rounds_left = FIRST_ROUNDS - 1
        self.focus: list[int] = []
        self.sent = 0  # candidates sent to be measured so far
        self.last: int | None = None

    def next_task_id(self) -> int:
        """The next task to get a round, or -1 when no task is left."""
        outer = self._outer()
        if self.last is not None:
            candidates = outer.tasks_[self.last].measure_candidates
            self.sent += len(candidates) if candidates is not None else 0
        if self.phase != "blind" or not self.queue:
            self._join_all(outer)  # every later pick sees all the rounds so far
        while True:
            alive = {t for t in range(len(self.weights)) if not outer.tasks_[t].is_terminated}
            self.queue = [t for t in self.queue if t in alive]
            if self.queue:
                self.last = self.queue.pop(0)
                return self.last
            if not alive:
                return -1
            if self.phase in ("blind", "guided") and self.guided_rounds_left > 0:
                self._join_all(outer)
                self.phase, self.guided_rounds_left = "guided", self.guided_rounds_left - 1
                self.queue = sorted(alive)
                continue
            if self.phase != "focus" and self.focus_from is not None and self.sent >= self.focus_from:
                self.phase = "focus"
                self.focus = [t for t in self.pick_focus() if t in alive] or sorted(alive)
                self.queue = [t for _ in range(ROUNDS_PER_FOCUS_TASK) for t in self.focus]
                continue
            if self.phase != "focus":
                self.phase = "gradient"
            pool = [t for t in self.focus if t in alive] or sorted(alive)
            self.last = gradient_pick(pool, self.weights, self.history)
            return self.last

    @staticmethod
    def _join_all(outer) -> None:
        """Process the results of every task still being measured (their rounds enter the history)."""
        for task_id, task in enumerate(outer.tasks_):
            if task.measure_candidates is not None and not task.is_terminated:
                outer.join_running_task(task_id)

"""Benchmark: where a tuning run's wall time goes (building, the cost model, the search itself).

Runs `nasc.compiler.tune.tune_module` on a model with a fresh database and times, in the tuning
process, the calls it makes to the candidate builder, to the XGBoost cost model (prediction, which
includes extracting each candidate's features, and training) and the task scheduler's waits for
measurements. What is left of the wall time is mostly MetaSchedule's evolutionary search itself
(sampling and mutating the population's traces, post-processing them), which runs in C++ and
cannot be wrapped from here. Prints each part's seconds and share of the wall time. Run from the
repository root:

    .venv/bin/python bench/tuning_time.py MODEL.onnx [--trials-per-task 11]
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path
from typing import Any

from tvm.s_tir.meta_schedule.cost_model import xgb_model

from nasc.compiler import pooled_builder, task_scheduler, tune
from nasc.compiler.build import lower_for_tuning
from nasc.compiler.frontend import import_onnx
from nasc.compiler.onnx_model import load_onnx
from nasc.compiler.target import tvm_target
from nasc.devices.registry import resolve_device

SECONDS: collections.Counter[str] = collections.Counter()
CALLS: collections.Counter[str] = collections.Counter()
NESTED: list[float] = []  # per timed call in progress: time spent in timed calls made from inside it


def time_calls(cls: type, method: str, label: str) -> None:
    """Replace `cls.method` by a wrapper that adds each call's own duration to SECONDS[label].

    Time spent in another timed call made from inside it (training the cost model while waiting
    for measurements) counts for that call only, so the parts add up to no more than the wall time.
    """
    original = getattr(cls, method)
    is_static = isinstance(cls.__dict__.get(method), staticmethod)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        NESTED.append(0.0)
        try:
            return original(*args, **kwargs)
        finally:
            elapsed = time.perf_counter() - start
            SECONDS[label] += elapsed - NESTED.pop()
            CALLS[label] += 1
            if NESTED:
                NESTED[-1] += elapsed

    setattr(cls, method, staticmethod(wrapper) if is_static else wrapper)


def unwrap(derived: Any) -> type:
    """The Python class behind a @derived_object class (its methods are the ones TVM calls)."""
    return derived._cls


PARTS: list[tuple[type, str, str]] = [
    (unwrap(pooled_builder.PooledLocalBuilder), "build", "building candidates (worker processes)"),
    (unwrap(xgb_model.XGBModel), "predict", "cost model: features and prediction"),
    (unwrap(xgb_model.XGBModel), "update", "cost model: training"),
    (unwrap(task_scheduler.PhasedScheduler), "_join_all", "waiting for measurements"),
]


def main() -> None:
    """Tune the model once with the parts above timed, then print the breakdown."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--trials-per-task", type=int, default=11)
    args = parser.parse_args()
    if not args.model.is_file():
        parser.error(f"no ONNX file {args.model}")
    for cls, method, label in PARTS:
        time_calls(cls, method, label)
    target = tvm_target(resolve_device("local"))
    mod = lower_for_tuning(import_onnx(load_onnx(args.model)), target)
    with tempfile.TemporaryDirectory() as database:
        start = time.perf_counter()
        summary = tune.tune_module(mod, target, Path(database), args.trials_per_task)
        wall = time.perf_counter() - start
    print(f"{summary.trials_run} trials over {len(summary.tasks)} tasks in {wall:.1f} s "
          f"({summary.trials_run / wall:.2f} per second)")
    for _, _, label in PARTS:
        print(f"  {label:44s} {SECONDS[label]:7.1f} s {100 * SECONDS[label] / wall:5.1f} %  ({CALLS[label]} calls)")
    rest = wall - sum(SECONDS[label] for _, _, label in PARTS)
    print(f"  {'the rest (mostly the evolutionary search)':44s} {rest:7.1f} s {100 * rest / wall:5.1f} %")


if __name__ == "__main__":
    main()

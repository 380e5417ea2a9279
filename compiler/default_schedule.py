"""The untuned schedule of each tuning task, timed like any candidate and kept as a record.

Untuned means fixed, not unscheduled: a blocked convolution gets a register tile chosen from the
vector ISA (blocked_conv_space.default_tile), a classifier's matrix-vector product a parallel,
vectorised loop (matvec_schedule.py), pooling and spatial means on blocked tensors vectorised
lanes inside the reduction (lane_reduction_schedule.py), a data-movement or element-wise kernel
parallel outer loops and a vectorised inner one (injective_schedule.py); TVM's own lowering leaves
them all as serial scalar loops, convolutions tens of times slower (ResNet-18 at 96x96 ran at 32x
onnxruntime's time). Other reductions keep TVM's lowering.

MetaSchedule only ever records the schedules it sampled, so with a small budget the best of them
can be slower than the untuned schedule of the same operator. Timing the untuned one
once per task, on the same builder and runner as the candidates, and keeping it in a database of
its own makes it one more contender: the union of both databases gives each operator the faster
of its best tuned schedule and its untuned one, so tuning never makes an operator slower.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .blocked_conv_space import fixed_conv_schedule
from .injective_schedule import injective_schedule
from .lane_reduction_schedule import lane_reduction_schedule
from .matvec_schedule import matvec_schedule

# The untuned schedules' name in the toolchain id (toolchain.py): entries built before them are not reused.
UNTUNED = "fixed-tiles-3"
# Sub-folder of a tuning database folder holding the untuned records, named by the version of the
# untuned schedules: records of older ones (their traces replay the older tiles) are timed afresh.
DEFAULT_DIR = f"default-{UNTUNED}"


@dataclass(frozen=True)
class DefaultTiming:
    """The untuned schedule's run time for one task (None when it failed to build or run)."""

    task_index: int
    run_us: float | None


def default_database(database_dir: Path, *, create: bool = False):  # -> ms.Database | None
    """The JSON database of untuned-schedule records under `database_dir`, or None if there is none."""
    from tvm.s_tir import meta_schedule as ms

    folder = database_dir / DEFAULT_DIR
    if not create and not (folder / "database_tuning_record.json").exists():
        return None
    folder.mkdir(parents=True, exist_ok=True)
    return ms.database.JSONDatabase(work_dir=str(folder))


def record_default_schedules(
    task_mods: list[tuple[int, Any]], target: Any, builder: Any, runner: Any, database: Any
) -> list[DefaultTiming]:
    """Build and time the untuned schedule of each (task index, task module); commit the timed ones.

    Uses the tuning run's own builder and runner, so the figures compare with the candidates'.
    """
    import tvm
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo
    from tvm.s_tir.meta_schedule.builder import BuilderInput
    from tvm.s_tir.meta_schedule.database import TuningRecord
    from tvm.s_tir.meta_schedule.runner import RunnerInput

    if not task_mods:
        return []
    schedules = [_untuned_schedule(mod) for _, mod in task_mods]
    built = builder.build([BuilderInput(sch.mod, target) for sch in schedules])
    timings: list[DefaultTiming] = []
    pending: list[tuple[int, Any, Any, list[Any], str]] = []
    for (index, mod), sch, result in zip(task_mods, schedules, built, strict=True):
        if result.error_msg is not None or result.artifact_path is None:
            timings.append(DefaultTiming(index, None))
            continue
        args_info = ArgInfo.from_entry_func(sch.mod, remove_preproc=True)
        pending.append((index, mod, sch, args_info, result.artifact_path))
    # The runner removes each artifact once it has run it, as it does for tuning candidates.
    device_type = str(tvm.runtime.device(target.get_target_device_type(), 0)).split(":")[0]  # "cpu"
    inputs = [RunnerInput(path, device_type, args_info) for *_, args_info, path in pending]
    futures = runner.run(inputs) if inputs else []
    for (index, mod, sch, args_info, _), future in zip(pending, futures, strict=True):
        result = future.result()
        if result.error_msg is not None or not result.run_secs:
            timings.append(DefaultTiming(index, None))
            continue
        run_secs = [float(s) for s in result.run_secs]
        record = TuningRecord(sch.trace, database.commit_workload(mod), run_secs, target, args_info)
        database.commit_tuning_record(record)
        timings.append(DefaultTiming(index, sum(run_secs) / len(run_secs) * 1e6))
    return sorted(timings, key=lambda t: t.task_index)


def fixed_schedule(mod: Any) -> Any:
    """The fixed schedule of a tuning task (see the module's doc), or None where TVM's lowering stays."""
    for rule in (fixed_conv_schedule, matvec_schedule, lane_reduction_schedule, injective_schedule):
        fixed = rule(mod)
        if fixed is not None:
            return fixed
    return None


def apply_fixed_schedules(mod: Any) -> Any:
    """Give each PrimFunc of a lowered module that has no schedule yet its :func:`fixed_schedule`
    (marked scheduled, so tuning records applied before stay and nothing replaces it)."""
    import tvm

    for gvar, func in list(mod.functions.items()):
        if not isinstance(func, tvm.tirx.PrimFunc) or (func.attrs is not None and func.attrs.get("tirx.is_scheduled")):
            continue
        sch = fixed_schedule(tvm.IRModule({"main": func}))
        if sch is not None:
            mod.update_func(gvar, sch.mod["main"].with_attr("tirx.is_scheduled", True))
    return mod


def _untuned_schedule(mod: Any) -> Any:
    """The schedule `mod` gets without tuning: its :func:`fixed_schedule`, else one that changes
    nothing but whose trace is not empty.

    MetaSchedule's databases leave out records with an empty trace, so the trace looks up the root
    block: an instruction that leaves the function as it is.
    """
    import tvm

    fixed = fixed_schedule(mod)
    if fixed is not None:
        return fixed
    sch = tvm.s_tir.Schedule(mod)
    root = getattr(getattr(mod["main"].body, "block", None), "name_hint", None)
    if root is not None:
        sch.get_sblock(root)
    return sch

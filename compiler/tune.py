"""MetaSchedule tuning with a database kept on disk per target and reused across runs and models.

A workload (one fused operator with its shapes, for one target) is tuned once at a given budget;
later compiles of any model that contains it spend no trials on it (tuning_budget.py keeps count).
The budget is given per task and spent over the model's untuned tasks together (task_scheduler.py):
every task gets two rounds (a blind one, then one guided by the cost model), then MetaSchedule's
gradient rule (Ansor's) gives rounds to the tasks that weigh most in the model's run time, instead
of the same number to a tiny element-wise add as to the convolution that takes a third of the run; a
last share goes to the tasks furthest behind their kind (tuning_focus.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasc.devices.spec import DeviceSpec
from nasc.errors import CompileError
from nasc.events import Progress, ProgressEvent
from nasc.fsutil import atomic_copy, exclusive_lock

from .blocked_conv_space import design_space
from .default_schedule import DEFAULT_DIR, default_database, record_default_schedules
from .target import target_dict
from .tuning_budget import TuningBudget
from .tuning_focus import FIRST_ROUNDS, TaskStanding, focus_budget, focus_tasks

WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
_MS_LOGGER = "tvm.s_tir.meta_schedule"
BUILD_TIMEOUT_S = 300.0
CHECKPOINT_S = 30.0  # at most this long between two merges of a run's records into the on-disk database
RUN_TIMEOUT_S = 120.0
RUN_PREFIX = ".run-"  # a tuning run's work folder inside the database folder
# Each candidate runs repeatedly for at least this long. TVM's default of 100 ms spends a large share
# of tuning time on timing; operators of a few microseconds still run thousands of times.
HOST_MIN_REPEAT_MS = 20


TUNE_STAGE = "tune"  # the stage name of tuning's progress events


@dataclass(frozen=True)
class TaskTuning:
    """One tuning task (a fused operator) and what this run did with it."""

    name: str
    workload: str
    weight: int
    trials_before: int
    trials_run: int
    best_us: float | None
    default_us: float | None = None  # the untuned schedule's time, when it was timed in this run

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "name": self.name,
            "workload": self.workload,
            "weight": self.weight,
            "trials_before": self.trials_before,
            "trials_run": self.trials_run,
            "best_us": self.best_us,
            "default_us": self.default_us,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskTuning:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


@dataclass(frozen=True)
class TuningSummary:
    """What tuning did for one compile."""

    database_dir: str | None
    trials_per_task: int
    trials_run: int = 0
    seconds: float = 0.0
    tasks: tuple[TaskTuning, ...] = field(default_factory=tuple)
    records_applied: int = 0
    measured_on: str = ""  # where this run's candidates were timed ("" when nothing was measured)
    emulated: bool = False  # True when the records were timed on an emulated board (not hardware latency)

    @property
    def tasks_tuned(self) -> int:
        """Tasks that received new trials in this run."""
        return sum(1 for t in self.tasks if t.trials_run > 0)

    @property
    def tasks_reused(self) -> int:
        """Tasks whose records came from earlier runs only."""
        return sum(1 for t in self.tasks if t.trials_run == 0 and t.trials_before > 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "database_dir": self.database_dir,
            "trials_per_task": self.trials_per_task,
            "trials_run": self.trials_run,
            "seconds": round(self.seconds, 3),
            "tasks_total": len(self.tasks),
            "tasks_tuned": self.tasks_tuned,
            "tasks_reused": self.tasks_reused,
            "records_applied": self.records_applied,
            "measured_on": self.measured_on,
            "emulated": self.emulated,
            "tasks": [t.to_dict() for t in self.tasks],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TuningSummary:
        """Inverse of :meth:`to_dict`."""
        return cls(
            database_dir=data["database_dir"],
            trials_per_task=int(data["trials_per_task"]),
            trials_run=int(data.get("trials_run", 0)),
            seconds=float(data.get("seconds", 0.0)),
            tasks=tuple(TaskTuning.from_dict(t) for t in data.get("tasks", [])),
            records_applied=int(data.get("records_applied", 0)),
            measured_on=str(data.get("measured_on", "")),
            emulated=bool(data.get("emulated", False)),
        )


def population_size(trials_per_round: int) -> int:
    """Evolutionary-search population: 16 per candidate measured in a round, between 64 and 256.

    Generating and scoring the population is most of a round's cost (bench/tuning_time.py shows
    where a run's time goes), and it costs the same whether 2 or 64 candidates get measured, so it is
    sized to the round rather than to the per-task budget: small rounds, which spreading trials by
    weight needs, stay cheap. From 16 per round (32 trials per task) both rules give 256.
    """
    return max(64, min(256, 16 * trials_per_round))


def measured_on_host(device: DeviceSpec | None) -> bool:
    """True when tuning for `device` times candidates on this host's CPU (None: the host)."""
    return device is None or (device.connection.kind == "local" and not device.is_cross)


def database_key(target: Any, device: DeviceSpec | None = None) -> dict[str, Any]:
    """What a tuning database is keyed by: target and TVM version, the runtime threads candidates are
    timed with, and for a device measured over RPC also its fingerprint and `emulated` flag (records timed
    under emulation never mix with a board's)."""
    import tvm

    key: dict[str, Any] = {"target": target_dict(target), "tvm": tvm.__version__}
    if device is not None and device.threads and device.threads != (os.cpu_count() or 1):
        key["threads"] = device.threads  # the host's own database is timed with every core
    if not measured_on_host(device):
        assert device is not None
        key["measured_on"] = {"device": device.fingerprint(), "emulated": device.emulated}
    return key


def database_dir_for(cache_dir: Path, target: Any, device: DeviceSpec | None = None) -> Path:
    """The tuning database folder for one target and TVM version (and device, when not the host)."""
    key = database_key(target, device)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    attrs = key["target"]
    parts = [str(attrs.get(k)) for k in ("kind", "mcpu") if attrs.get(k)] or ["target"]
    if not measured_on_host(device):
        assert device is not None
        parts.append(re.sub(r"[^A-Za-z0-9_.-]+", "_", device.name))
        if device.emulated and "emulated" not in device.name:
            parts.append("emulated")
    return cache_dir / "tuning" / f"{'-'.join(parts)}-{digest}"


def _quiet_meta_schedule() -> None:
    """Keep MetaSchedule's per-batch log off the console; call before each tuning call.

    TVM's logging setup raises the level back to DEBUG on every call, and it chokes on unnamed
    handlers (such as a test runner's capture handlers) attached to its logger, so both are
    reset here each time.
    """
    logger = logging.getLogger(_MS_LOGGER)
    logger.setLevel(logging.WARNING)
    for handler in list(logger.handlers):
        if handler.get_name() is None:
            logger.removeHandler(handler)
    if not any(isinstance(f, _DropLevelHint) for f in logger.filters):
        logger.addFilter(_DropLevelHint())


class _DropLevelHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Logging level set to")


def _error_tail(error: str | None, lines: int = 12) -> str:
    text = (error or "(none reported)").strip().splitlines()
    return "\n".join(text[-lines:])


def _workload_hash(mod: Any) -> str:
    from tvm_ffi import structural_hash

    return f"{structural_hash(mod) & 0xFFFFFFFFFFFFFFFF:016x}"


def _copy_databases(source: Path, dest: Path) -> None:
    """Copy the tuned and the untuned-schedule database files from `source` to `dest`, each atomically."""
    for folder in (source, source / DEFAULT_DIR):
        for name in (WORKLOAD_FILE, RECORD_FILE):
            if (folder / name).exists():
                atomic_copy(folder / name, dest / folder.relative_to(source) / name)


def _remove_stale_runs(database_dir: Path) -> None:
    """Delete the work folders of runs that were killed (call with the database's lock held)."""
    for stale in database_dir.glob(f"{RUN_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)


def trials_per_round(trials: int, tasks: int, cap: int) -> int:
    """Candidates measured per scheduling round when `trials` are spread over `tasks` tasks.

    Every task gets FIRST_ROUNDS rounds first; a round is sized so that they take at most two
    thirds of the average share, the rest (or more) left for the tasks that gain most.
    """
    return max(1, min(cap, trials // ((FIRST_ROUNDS + 1) * max(1, tasks))))


class _Tally:
    """Trials and best run time per task, shared by the progress callbacks of one tuning run."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.total = 0  # new trials this run will spend (set when tuning starts)
        self.label = ""
        self.done = 0
        self.trials: dict[int, int] = {}
        self.best_secs: dict[int, float] = {}
        self.weights: dict[int, int] = {}
        self.measured = 0  # candidates with a valid timing
        self.first_error: str | None = None
        self.default_us: dict[int, float | None] = {}  # untuned schedule's time, for tasks timed this run
        self.history: dict[int, list[float]] = {}  # per task: its best time (s) after each of its rounds

    def callback(self, task_ids: list[int], weights: list[int], checkpoint: Callable[[], None]):
        """A MeasureCallback for one tune_tasks call whose local task ids map to `task_ids`.

        It calls `checkpoint` after a batch when CHECKPOINT_S seconds have passed since the last call.
        """
        import numpy as np
        from tvm.ir.utils import derived_object
        from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

        tally = self
        last_checkpoint = [time.monotonic()]
        for task, weight in zip(task_ids, weights, strict=True):
            tally.weights[task] = weight

        @derived_object
        class Progress(PyMeasureCallback):
            def apply(self, task_scheduler, task_id, candidates, builder_results, runner_results) -> None:
                task = task_ids[int(task_id)]
                tally.done += len(candidates)
                tally.trials[task] = tally.trials.get(task, 0) + len(candidates)
                for built, result in zip(builder_results, runner_results, strict=False):
                    error = built.error_msg or result.error_msg
                    if error is None and result.run_secs:
                        tally.measured += 1
                        secs = float(np.mean([float(s) for s in result.run_secs]))
                        if 0 < secs < tally.best_secs.get(task, float("inf")):
                            tally.best_secs[task] = secs
                    elif tally.first_error is None:
                        tally.first_error = str(error or "no timing returned")
                tally.history.setdefault(task, []).append(tally.best_secs.get(task, float("inf")))
                if time.monotonic() - last_checkpoint[0] >= CHECKPOINT_S:
                    checkpoint()
                    last_checkpoint[0] = time.monotonic()
                if tally.progress is not None:
                    estimate = sum(tally.best_secs[t] * tally.weights[t] for t in tally.best_secs) * 1e3
                    figures = {"best_estimate_ms": estimate} if tally.best_secs else {}
                    tally.progress(ProgressEvent(TUNE_STAGE, min(tally.done, tally.total), tally.total,
                                                 label=tally.label, figures=figures))

        return Progress()


@dataclass(frozen=True)
class Measurement:
    """Where tuning candidates are timed: a MetaSchedule runner and the export its builder must use."""

    runner: Any
    f_export: Any = None  # None: TVM's default export (fine for this host)
    where: str = "this host"
    emulated: bool = False


@contextmanager
def host_measurement(threads: int = 0) -> Iterator[Measurement]:
    """Candidates timed on this host's CPU (MetaSchedule's LocalRunner) with `threads` runtime threads, the
    number the device runs networks with (0: the user's TVM_NUM_THREADS, else every core)."""
    from tvm.s_tir import meta_schedule as ms

    evaluator = ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=HOST_MIN_REPEAT_MS)
    # With TVM_NUM_THREADS unset, TVM's pool can run one thread (seen on a 2-core x86 host), so tuning would
    # pick schedules for one thread, slower when the library runs with all of them.
    saved = os.environ.get("TVM_NUM_THREADS")
    if threads > 0:
        os.environ["TVM_NUM_THREADS"] = str(threads)
    elif saved is None:
        os.environ["TVM_NUM_THREADS"] = str(os.cpu_count() or 1)
    try:
        yield Measurement(ms.runner.LocalRunner(timeout_sec=RUN_TIMEOUT_S, evaluator_config=evaluator))
    finally:
        if saved is None:
            os.environ.pop("TVM_NUM_THREADS", None)
        else:
            os.environ["TVM_NUM_THREADS"] = saved


def tune_module(
    mod: Any,
    target: Any,
    database_dir: Path,
    trials_per_task: int,
    *,
    trials_per_iteration: int = 32,
    seed: int = 0,
    progress: Progress | None = None,
    measurement: Callable[[], AbstractContextManager[Measurement]] | None = None,
) -> TuningSummary:
    """Tune the tasks of `mod` (already lowered by build.lower_for_tuning) at `trials_per_task`.

    `mod` may be a list of modules (a latency table's blocks): they are tuned as one run, each distinct
    workload once, so one builder pool, one runner and one search serve them all.

    Tasks whose workload a run at this budget or a bigger one has tuned get no trials. The others
    share `trials_per_task` times their number, less what earlier runs spent on them, in rounds of at
    most `trials_per_iteration` candidates handed out by task_scheduler.PhasedScheduler.
    The run's records are merged into the database atomically every CHECKPOINT_S seconds, so an
    interrupted or failed run keeps what it measured and never leaves a half-written database.
    `measurement` opens where candidates are timed, only when some task needs trials (default:
    :func:`host_measurement`; remote_tuning times them on a device over RPC).
    """
    from tvm.s_tir import meta_schedule as ms

    from .pooled_builder import PooledLocalBuilder
    from .task_scheduler import PhasedScheduler
    from .tensor_intrinsics import import_tensor_intrinsics

    started = time.perf_counter()
    _quiet_meta_schedule()
    extracted = distinct_tasks(mod if isinstance(mod, (list, tuple)) else [mod], target)
    with exclusive_lock(database_dir / ".lock"):
        _remove_stale_runs(database_dir)
        budget = TuningBudget.load(database_dir)
        hashes = [_workload_hash(t.dispatched[0]) for t in extracted]
        spent_before = [budget.get(h).trials for h in hashes]
        # The least tuned first: a resumed run's first rounds go to the tasks the interruption left out.
        todo = sorted((i for i, h in enumerate(hashes) if budget.get(h).level < trials_per_task),
                      key=lambda i: spent_before[i])
        remaining = trials_per_task * len(todo) - sum(spent_before[i] for i in todo)
        tally = _Tally(progress)
        where, emulated = "", False
        if todo and remaining > 0:
            with (measurement or host_measurement)() as measure, \
                    tempfile.TemporaryDirectory(prefix=RUN_PREFIX, dir=database_dir) as work:
                where, emulated = measure.where, measure.emulated
                import_tensor_intrinsics()  # MetaSchedule's tuning contexts need them; slow unless imported so
                work_dir = Path(work)
                _copy_databases(database_dir, work_dir)
                database = ms.database.JSONDatabase(work_dir=str(work_dir))
                for i in todo:
                    extracted[i] = _as_stored(extracted[i], database)
                defaults = default_database(work_dir, create=True)
                workers = max(1, (os.cpu_count() or 1))
                # Generous timeouts: a busy 2-core machine takes far longer than TVM's 30 s defaults to
                # start a worker and build, and a timed-out candidate is a wasted trial.
                builder = PooledLocalBuilder(max_workers=workers, timeout_sec=BUILD_TIMEOUT_S,
                                             f_export=measure.f_export)

                def checkpoint() -> None:
                    """Merge what this run measured into the database folder and count its trials."""
                    if tally.measured == 0:
                        return  # nothing timed yet: spending the budget on failures would lose it for good
                    _copy_databases(work_dir, database_dir)
                    for i in todo:
                        budget.set_trials(hashes[i], spent_before[i] + tally.trials.get(i, 0))
                    budget.save()

                tally.total, tally.label = remaining, f"{len(todo)} tasks"
                if progress is not None:
                    progress(ProgressEvent(TUNE_STAGE, 0, remaining, label=tally.label))
                try:
                    _quiet_meta_schedule()
                    untimed = [(i, extracted[i].dispatched[0]) for i in todo
                               if not defaults.has_workload(extracted[i].dispatched[0])]
                    for timing in record_default_schedules(untimed, target, builder, measure.runner, defaults):
                        tally.default_us[timing.task_index] = timing.run_us
                    round_size = trials_per_round(remaining, len(todo), trials_per_iteration)
                    focus = focus_budget(remaining, round_size, len(todo))

                    contexts, weights = tune_contexts([extracted[i] for i in todo], work_dir, seed,
                                                      population_size(round_size))
                    callback = tally.callback(todo, [int(w) for w in weights], checkpoint)
                    # One call runs every phase (task_scheduler.py), so each task keeps one search state.
                    scheduler = PhasedScheduler(
                        weights=[float(w) for w in weights],
                        history=lambda local: tally.history.get(todo[local], []),
                        total_trials=remaining,
                        focus_trials=focus,
                        pick_focus=lambda: [todo.index(i) for i in
                                            focus_tasks(_standings(extracted, todo, tally), focus, round_size)],
                    )
                    try:
                        ms.tune_tasks(
                            tasks=contexts,
                            task_weights=weights,
                            work_dir=str(work_dir),
                            max_trials_global=remaining,
                            num_trials_per_iter=round_size,
                            database=database,
                            builder=builder,
                            runner=measure.runner,
                            measure_callbacks=[*ms.MeasureCallback.create("default"), callback],
                            task_scheduler=scheduler,
                        )
                    except Exception as exc:
                        raise CompileError(f"MetaSchedule tuning failed: {type(exc).__name__}: {exc}") from exc
                    if tally.done > 0 and tally.measured == 0:
                        # Nothing is recorded: a budget spent on failures would never be tuned again.
                        raise CompileError(
                            f"MetaSchedule tuning measured none of {tally.done} candidates on "
                            f"{measure.where}; the first error:\n{_error_tail(tally.first_error)}"
                        )
                finally:
                    try:
                        checkpoint()  # after a failure or an interruption too: what was measured is kept
                    finally:
                        builder.shutdown()
        if todo:
            budget.complete((hashes[i] for i in todo), trials_per_task)
            budget.save()
    tasks = tuple(
        TaskTuning(
            name=t.task_name,
            workload=hashes[i],
            weight=int(t.weight),
            trials_before=spent_before[i],
            trials_run=tally.trials.get(i, 0),
            best_us=round(tally.best_secs[i] * 1e6, 3) if i in tally.best_secs else None,
            default_us=_rounded(tally.default_us.get(i)),
        )
        for i, t in enumerate(extracted)
    )
    return TuningSummary(
        database_dir=str(database_dir),
        trials_per_task=trials_per_task,
        trials_run=tally.done,
        seconds=time.perf_counter() - started,
        tasks=tasks,
        measured_on=where,
        emulated=emulated,
    )


def distinct_tasks(mods: Sequence[Any], target: Any) -> list[Any]:
    """The tuning tasks of `mods` (each lowered for tuning), a workload shared by several modules once.

    A shared task's weight is the sum of its weights (how often it runs across the modules), so the
    scheduler's gradient rule sees what it weighs in all of them. Names are made unique: MetaSchedule
    keeps one log per task name.
    """
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.relax_integration import extract_tasks

    by_hash: dict[str, list[Any]] = {}
    for mod in mods:
        for task in extract_tasks(mod, target):
            if not task.mod.attrs.get("tirx.is_scheduled", False):
                by_hash.setdefault(_workload_hash(task.dispatched[0]), []).append(task)
    if len(mods) == 1:
        return [task for group in by_hash.values() for task in group]
    names: dict[str, int] = {}
    merged = []
    for group in by_hash.values():
        first = group[0]
        count = names[first.task_name] = names.get(first.task_name, 0) + 1
        name = first.task_name if count == 1 else f"{first.task_name}_{count}"
        merged.append(ms.ExtractedTask(name, first.mod, first.target, list(first.dispatched),
                                       sum(int(t.weight) for t in group)))
    return merged


def _as_stored(task: Any, database: Any) -> Any:
    """`task` with the workload as `database` stores it, when it holds a structurally equal one.

    TIR block names come from Relax variable names, which differ between models (and between a latency
    table's block and the network that contains it), while the database matches workloads by structure
    alone. A record's trace names the blocks of the workload it is stored with, so more trials for a
    workload tuned before must run on the stored module; a trace of other names stored beside it would
    make the database unreadable.
    """
    from tvm.s_tir import meta_schedule as ms

    stored = database.commit_workload(task.dispatched[0]).mod
    return ms.ExtractedTask(task.task_name, task.mod, task.target, [stored], int(task.weight))


def tune_contexts(tasks: list[Any], work_dir: Path, seed: int, population: int) -> tuple[list[Any], list[float]]:
    """MetaSchedule's tuning contexts and weights for `tasks`, each with its design space
    (blocked_conv_space.py) and an evolutionary search of `population` (as MetaSchedule's
    extracted_tasks_to_tune_contexts makes them, which gives every task the same space)."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.logging import get_loggers_from_work_dir
    from tvm.s_tir.meta_schedule.utils import fork_seed

    contexts: list[Any] = []
    for task, logger, rand_state in zip(tasks, get_loggers_from_work_dir(str(work_dir), [t.task_name for t in tasks]),
                                        fork_seed(seed, n=len(tasks)), strict=True):
        contexts.append(ms.TuneContext(
            mod=task.dispatched[0], target=task.target, space_generator=design_space(task.dispatched[0]),
            search_strategy=ms.search_strategy.EvolutionarySearch(population_size=population),
            task_name=task.task_name, logger=logger, rand_state=rand_state, num_threads="physical",
        ).clone())
    _quiet_meta_schedule()  # the loggers' setup raised the level again
    return contexts, [float(t.weight) for t in tasks]


def _standings(extracted: list[Any], todo: list[int], tally: _Tally) -> list[TaskStanding]:
    """Where each task of this run stands: its flops, bytes moved and the best time measured for it so far."""
    from tvm.s_tir.analysis import estimate_tir_flops

    return [
        TaskStanding(index=i, name=extracted[i].task_name, weight=int(extracted[i].weight),
                     flops=float(estimate_tir_flops(extracted[i].dispatched[0])), best_secs=tally.best_secs.get(i),
                     bytes_moved=float(bytes_moved(extracted[i].dispatched[0])))
        for i in todo
    ]


def bytes_moved(mod: Any) -> int:
    """Bytes a task's kernel reads and writes: the sizes of its buffer parameters."""
    import tvm

    total = 0
    for func in mod.functions.values():
        for param in getattr(func, "params", ()):
            kind = getattr(param, "ty", None)
            if not isinstance(kind, tvm.tirx.BufferType):
                continue  # a scalar parameter, or not a kernel
            elements = 1
            for extent in kind.shape:
                elements *= int(extent)
            dtype = tvm.DataType(str(kind.dtype))
            total += elements * dtype.bits * dtype.lanes // 8
    return total


def _rounded(us: float | None) -> float | None:
    return None if us is None else round(us, 3)


def open_database(database_dir: Path):  # -> ms.Database | None
    """The on-disk database, or None when nothing was ever tuned for this target.

    Where untuned schedules were timed too, the union of both: each operator gets the faster of its
    best tuned schedule and its untuned one.
    """
    from tvm.s_tir import meta_schedule as ms

    if not (database_dir / RECORD_FILE).exists():
        return None
    tuned = ms.database.JSONDatabase(work_dir=str(database_dir), allow_missing=False)
    defaults = default_database(database_dir)
    return tuned if defaults is None else ms.database.UnionDatabase(tuned, defaults)

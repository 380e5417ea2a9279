"""Fill the latency table: export each missing block, compile it, time it on the device, store it.

Compiles run in worker processes (host cores); measurements run one thread per device session (one
per server under a tracker key, so a farm is used in parallel). A dropped session is retried on a
fresh one; each entry is stored in its own transaction the moment it is measured, so a build that
stops resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nasc.compiler.frontend import import_onnx
from nasc.compiler.onnx_model import load_onnx
from nasc.compiler.runtime import load_vm
from nasc.compiler.settings import CompileSettings
from nasc.compiler.target import tvm_target
from nasc.compiler.toolchain import table_toolchain
from nasc.compiler.tune import TUNE_STAGE as COMPILER_TUNE_STAGE
from nasc.compiler.tune import TuningSummary, database_dir_for
from nasc.devices.latency_table import LatencyEntry, LatencyKey, LatencyTable
from nasc.devices.oracle import Measurement, combine_passes, measure_vm
from nasc.devices.rpc import DeviceSession, SessionSource
from nasc.devices.settings import MeasureSettings
from nasc.devices.spec import DeviceSpec
from nasc.errors import CompileError, NascError
from nasc.events import Progress, ProgressEvent, ignore_progress
from nasc.search.data import count_classes
from nasc.search.space import SearchSpace, build_block
from nasc.signature import BlockSignature

from .blockbuild import BlockCompiler, BlockFactory, block_input, compile_error, export_block
from .compile import tune_for_device
from .config import Config

LUT_STAGE = "lut"  # progress: measured blocks of the ones missing (a bar), retries (notes), blocks tuned (notes)
COMPILE_STAGE = "lut-compile"  # progress: libraries built so far (no bar: builds and timings overlap on a farm)
TUNE_STAGE = "lut-tune"  # the table's tuning run (the compiler's "tune" events, renamed: the report's tuning
                         # curve is the final compile's)


@dataclass(frozen=True)
class BlockTuning:
    """Tune each missing block before it is built, so the table holds the blocks as the final compile ships
    them. The records go to the device's tuning database, where the final compile finds them: a workload
    shared by several blocks, or by a block and the searched network, is tuned once."""

    settings: CompileSettings  # settings.trials: trials per task
    database_dir: Path


@dataclass(frozen=True)
class LutBuildReport:
    """What a table build did."""

    device: str
    emulated: bool
    blocks: int
    already_present: int
    measured: int
    noisy: tuple[str, ...]
    sessions: int
    retried: int
    wall_s: float
    table_path: str
    servers_used: tuple[str, ...] = field(default_factory=tuple)
    tuned_trials: int = 0  # trials per task the blocks were tuned at (0: default schedules)
    trials_run: int = 0  # trials this build spent tuning
    tasks_tuned: int = 0
    tasks_reused: int = 0  # tasks whose workload an earlier run had tuned already
    tune_s: float = 0.0  # of wall_s, the tuning run (the rest: exporting, building and timing the blocks)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {**self.__dict__, "noisy": list(self.noisy), "servers_used": list(self.servers_used)}


def measure_library_on(
    session: DeviceSession, lib_path: Path, inputs: Sequence[np.ndarray], what: str, settings: MeasureSettings
) -> Measurement:
    """Upload and time one library on an open session."""
    module = session.load_library(lib_path)
    vm = load_vm(module, session.dev)
    return measure_vm(
        vm, session.dev, inputs, settings,
        what=what, device=session.device.name, emulated=session.device.emulated,
        address=session.address, target=session.device.target_json(),
        extra={"threads": session.check_threads()},
    )


def build_table(
    device: DeviceSpec,
    blocks: Sequence[BlockSignature],
    table: LatencyTable,
    cache_dir: Path,
    settings: MeasureSettings,
    factory: BlockFactory,
    *,
    source: SessionSource | None = None,
    sessions: int | None = None,
    compile_jobs: int | None = None,
    tuning: BlockTuning | None = None,
    progress: Progress = ignore_progress,
) -> LutBuildReport:
    """Measure every block of `blocks` missing from `table` for `device`; returns what was done.

    `source` may be an already entered SessionSource (tests and benches pass one to control the
    servers); otherwise one is opened for the duration. `sessions` defaults to the device's
    parallelism (servers under the tracker key; 1 for rpc/local). With `tuning`, each missing block is
    tuned first (all of them as one tuning run) and built with the device database's records.
    """
    start = time.monotonic()
    unique = list(dict.fromkeys(b for b in blocks if b.op != "zero"))
    todo = table.missing(unique, device)
    tally: dict[str, Any] = {}
    if tuning is not None:
        tally = _tune_blocks(device, todo, factory, cache_dir, tuning, progress)
        tally["tune_s"] = time.monotonic() - start
    progress(ProgressEvent(LUT_STAGE, 0, len(todo), label=device.name))
    own_source = source is None
    src = source if source is not None else SessionSource(device, cache_dir, settings).__enter__()
    try:
        n_sessions = max(1, sessions or src.parallelism())
        n_sessions = min(n_sessions, max(1, len(todo)))
        measured, noisy, retried, servers = _run(
            device, todo, table, cache_dir, settings, factory, src, n_sessions, compile_jobs, progress,
            tuning.database_dir if tuning is not None else None,
        )
    finally:
        if own_source:
            src.close()
    return LutBuildReport(
        device=device.name, emulated=device.emulated, blocks=len(unique), already_present=len(unique) - len(todo),
        measured=measured, noisy=tuple(noisy), sessions=n_sessions, retried=retried,
        wall_s=time.monotonic() - start, table_path=str(table.path), servers_used=tuple(sorted(servers)),
        tuned_trials=tuning.settings.trials if tuning is not None else 0, **tally,
    )


def _tune_blocks(device: DeviceSpec, todo: Sequence[BlockSignature], factory: BlockFactory, cache_dir: Path,
                 tuning: BlockTuning, progress: Progress) -> dict[str, int]:
    """Tune the blocks of `todo` into the device's database as one run; returns trials_run, tasks_tuned,
    tasks_reused."""
    paths = {block.key(): export_block(block, factory, cache_dir) for block in todo}
    summary = tune_onnx_files(device, paths, cache_dir, tuning, progress, what="the latency table's blocks")
    return {"trials_run": summary.trials_run, "tasks_tuned": summary.tasks_tuned,
            "tasks_reused": summary.tasks_reused}


def tune_onnx_files(device: DeviceSpec, paths: dict[str, Path], cache_dir: Path, tuning: BlockTuning,
                    progress: Progress, *, what: str) -> TuningSummary:
    """Tune the networks of `paths` (name -> ONNX file) into the device's database as one run: each distinct
    workload once, one builder pool and one runner for all (tune.distinct_tasks)."""
    if not paths:
        return TuningSummary(database_dir=str(tuning.database_dir), trials_per_task=tuning.settings.trials)
    mods = []
    for name, onnx_path in paths.items():
        try:
            mods.append(import_onnx(load_onnx(onnx_path), str(onnx_path)))
        except CompileError as exc:
            raise CompileError(f"{name}: {exc}") from None
    progress(ProgressEvent.note(LUT_STAGE, f"tuning {len(paths)} of {what} as one run "
                                           f"({tuning.settings.trials} trials per distinct task)"))
    def relay(event: ProgressEvent) -> None:
        progress(dataclasses.replace(event, stage=TUNE_STAGE) if event.stage == COMPILER_TUNE_STAGE else event)

    try:
        return tune_for_device(mods, tvm_target(device), device, tuning.settings, tuning.database_dir,
                               cache_dir, relay)
    except CompileError as exc:  # others (an unreachable device) keep their own kind and exit code
        raise CompileError(f"tuning {len(paths)} of {what} for '{device.name}': {exc}") from None


def _run(
    device: DeviceSpec,
    todo: list[BlockSignature],
    table: LatencyTable,
    cache_dir: Path,
    settings: MeasureSettings,
    factory: BlockFactory,
    src: SessionSource,
    n_sessions: int,
    compile_jobs: int | None,
    progress: Progress,
    tuning_dir: Path | None = None,
) -> tuple[int, list[str], int, set[str]]:
    if not todo:
        return 0, [], 0, set()
    version = table.toolchain
    passes = settings.passes
    ready: queue.Queue[tuple[BlockSignature, Path] | None] = queue.Queue()
    stop = threading.Event()
    errors: list[BaseException] = []
    lock = threading.Lock()
    measured = 0
    timings = 0
    taken: dict[BlockSignature, list[Measurement]] = {}
    noisy: list[str] = []
    servers: set[str] = set()
    workers = [src.worker(slot) for slot in range(n_sessions)]

    def measure_loop(worker_index: int) -> None:
        nonlocal measured, timings
        worker = workers[worker_index]
        while not stop.is_set():
            item = ready.get()
            if item is None:
                return
            block, lib = item
            try:
                before = worker.retried
                m = worker.run(
                    lambda s, b=block, p=lib: measure_library_on(s, p, [block_input(b)], b.key(), settings),
                    what=f"timing block {block.key()}",
                )
                address = worker.session.address if worker.session else ""
                worker.drop()  # one session per block: a session never outlives its timeout
                with lock:
                    timings += 1
                    servers.add(address)
                    taken.setdefault(block, []).append(m)
                    complete = len(taken[block]) == passes
                    step = timings
                figures: dict[str, float] = {}
                if complete:  # every pass timed: store (its own transaction; a stopped build keeps it)
                    entry: LatencyEntry = table.put(LatencyKey.for_block(block, device, version),
                                                    combine_passes(taken[block]))
                    figures = {"median_ms": entry.median_ms}
                    with lock:
                        measured += 1
                        if entry.measurement.noisy:
                            noisy.append(block.key())
                if worker.retried > before:
                    progress(ProgressEvent.note(LUT_STAGE, f"retried {block.key()} "
                                                           f"({worker.retried - before} time(s))"))
                progress(ProgressEvent(LUT_STAGE, step, len(todo) * passes, label=device.name, figures=figures))
            except BaseException as exc:
                with lock:
                    errors.append(exc)
                stop.set()
                return

    threads = [threading.Thread(target=measure_loop, args=(i,), daemon=True, name=f"lut-measure-{i}")
               for i in range(n_sessions)]
    for t in threads:
        t.start()
    try:
        with BlockCompiler(device, compile_jobs, tuning_dir=tuning_dir, toolchain=table.toolchain) as compiler:
            futures = []
            for block in todo:
                if stop.is_set():
                    break
                onnx_path = export_block(block, factory, cache_dir)
                futures.append((block, compiler.submit(onnx_path)))
            # A server on this host shares its CPU with the compiler: time nothing until every build is done.
            # Passes run over the whole set, so they wait for every build too.
            hold = src.host_shared or passes > 1
            compiled: list[tuple[BlockSignature, Path]] = []
            for built, (block, fut) in enumerate(futures, start=1):
                if stop.is_set():
                    break
                try:
                    lib = Path(fut.result())
                except NascError:
                    raise
                except Exception as exc:
                    raise compile_error(block, exc) from None
                progress(ProgressEvent(COMPILE_STAGE, built))
                if hold:
                    compiled.append((block, lib))
                else:
                    ready.put((block, lib))
            for _ in range(passes):  # (nothing held: every library is queued already, passes is 1)
                for item in compiled:
                    ready.put(item)
    except BaseException as exc:
        errors.append(exc)
        stop.set()
    finally:
        for _ in threads:
            ready.put(None)
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    return measured, noisy, sum(w.retried for w in workers), servers


def space_blocks(space_config: Config) -> list[BlockSignature]:
    """Every candidate block of the search space a project file describes ([search.space] and [data])."""
    settings = space_config.search.space
    classes = count_classes(space_config.data, settings, space_config.base_dir)
    return SearchSpace(settings, classes).candidate_blocks()


def build_project_table(
    config: Config,
    device: DeviceSpec,
    space_config: Config | None = None,
    *,
    sessions: int | None = None,
    progress: Progress = ignore_progress,
) -> LutBuildReport:
    """`nasc lut build`: fill the cache's table with every block of the space for `device`, untuned or
    tuned at [search] table_trials per task."""
    blocks = space_blocks(space_config or config)
    cache_dir = config.cache_dir()
    trials = config.table_trials()
    with LatencyTable.in_cache(cache_dir, table_toolchain(trials, device.threads)) as table:
        return build_table(device, blocks, table, cache_dir, config.measure, build_block,
                           sessions=sessions, tuning=table_tuning(config, device, trials), progress=progress)


def table_tuning(config: Config, device: DeviceSpec, trials: int) -> BlockTuning | None:
    """How a table at `trials` per task is tuned: [compile]'s settings at that budget, into the device's
    tuning database (the one the final compile reads); None for an untuned table."""
    if trials == 0:
        return None
    return BlockTuning(dataclasses.replace(config.compile, trials=trials),
                       database_dir_for(config.cache_dir(), tvm_target(device), device))

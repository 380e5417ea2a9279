"""How well the table predicts whole networks: random architectures, measured end to end, and the fit.

`fit_predictor` samples architectures of the search space, compiles each whole network as the pipeline
ships it (untuned, or with a tuned table's records plus the trials the final compile would spend on the
network's own workloads), times it on the device, and fits ``measured = scale * sum(blocks) + overhead``
for that table; the error it reports comes from k-fold held-out predictions, never from the networks the
line was fitted on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nasc.compiler.export import export_onnx
from nasc.compiler.toolchain import table_toolchain
from nasc.devices.latency_table import LatencyTable
from nasc.devices.oracle import Measurement, combine_passes
from nasc.devices.predictor import PredictorFit, TablePredictor, cross_validated_fit, error_stats, save_fit
from nasc.devices.rpc import SessionSource
from nasc.devices.settings import MeasureSettings
from nasc.devices.spec import DeviceSpec
from nasc.errors import MeasurementError
from nasc.events import Progress, ProgressEvent, ignore_progress
from nasc.search.data import count_classes
from nasc.search.space import ArchSpec, SearchSpace, build, build_block
from nasc.signature import BlockSignature

from .blockbuild import BlockCompiler
from .config import Config
from .latency_table_build import BlockTuning, build_table, measure_library_on, table_tuning, tune_onnx_files

FIT_STAGE = "fit"


@dataclass(frozen=True)
class NetworkSample:
    """One architecture: the table's sum, the held-out prediction, the end-to-end measurement."""

    arch: str
    sum_ms: float
    predicted_ms: float
    measured_ms: float
    measured_cv: float
    noisy: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class FidelityReport:
    """The fit and the per-network evidence behind its error figures."""

    device: str
    emulated: bool
    fit: PredictorFit
    raw_sum: dict[str, float]  # error of the plain sum (no fit), for comparison
    samples: tuple[NetworkSample, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"device": self.device, "emulated": self.emulated, "fit": self.fit.to_dict(),
                "raw_sum": dict(self.raw_sum), "samples": [s.to_dict() for s in self.samples]}


def random_archs(space: Any, count: int, seed: int = 0) -> list[Any]:
    """`count` distinct random ArchSpecs of `space` (uniform op per layer)."""
    rng = np.random.default_rng(seed)
    seen: dict[tuple[str, ...], Any] = {}
    layers = space.layers()
    for _ in range(count * 50):
        ops = tuple(layer.ops[int(rng.integers(len(layer.ops)))] for layer in layers)
        seen.setdefault(ops, ArchSpec(space, ops))
        if len(seen) == count:
            break
    return list(seen.values())


def _export_network(arch: Any, cache_dir: Path, seed: int) -> Path:
    import torch

    digest = hashlib.sha256(repr((arch.to_dict(), seed)).encode()).hexdigest()[:16]
    path = Path(cache_dir) / "networks" / digest / "net.onnx"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(seed)
        export_onnx(build(arch).eval(), arch.input_shape(), path)
    return path


def measure_networks(
    device: DeviceSpec,
    archs: Sequence[Any],
    cache_dir: Path,
    settings: MeasureSettings,
    source: SessionSource,
    *,
    compile_jobs: int | None = None,
    tuning: BlockTuning | None = None,
    toolchain: str | None = None,
    progress: Progress = ignore_progress,
) -> list[Measurement]:
    """Compile and time each whole network on `device`, in order; with `tuning`, the networks' workloads are
    tuned first (those a tuned table holds already cost nothing) and built with the database's records."""
    paths = [_export_network(a, cache_dir, seed=i) for i, a in enumerate(archs)]
    if tuning is not None:
        tune_onnx_files(device, {str(a): p for a, p in zip(archs, paths, strict=True)}, cache_dir, tuning,
                        progress, what="the sampled networks")
    worker = source.worker()
    rng = np.random.default_rng(0)
    with BlockCompiler(device, compile_jobs, tuning_dir=tuning.database_dir if tuning else None,
                       toolchain=toolchain) as compiler:
        futures = [compiler.submit(p) for p in paths]
        if source.host_shared:  # a server on this host: no timing while the compiler runs
            for i, fut in enumerate(futures):
                fut.result()
                progress(ProgressEvent(FIT_STAGE, i + 1, len(futures), label="networks compiled"))
        libs = [Path(fut.result()) for fut in futures]
        inputs = [rng.standard_normal(a.input_shape()).astype("float32") for a in archs]
        taken: list[list[Measurement]] = [[] for _ in archs]
        total = len(archs) * settings.passes
        for n in range(total):  # pass after pass over every network (MeasureSettings.passes)
            i = n % len(archs)
            lib, x, arch = libs[i], inputs[i], archs[i]
            m = worker.run(lambda s, lib=lib, x=x, a=arch: measure_library_on(s, lib, [x], str(a), settings),
                           what=f"timing network {arch}")
            worker.drop()
            taken[i].append(m)
            progress(ProgressEvent(FIT_STAGE, n + 1, total, label="networks timed"))
        results = [combine_passes(t) for t in taken]
    return results


def evaluate(device: DeviceSpec, predictor: TablePredictor, archs: Sequence[Any],
             measured: Sequence[Measurement], folds: int = 5) -> FidelityReport:
    """Fit the line on (sum, measured) pairs and report held-out error."""
    sums = [predictor.sum_ms(_blocks(a)) for a in archs]
    meds = [m.median_ms for m in measured]
    fit, held = cross_validated_fit(device, sums, meds, folds)
    samples = tuple(
        NetworkSample(str(a), s, p, m.median_ms, m.cv, m.noisy)
        for a, s, p, m in zip(archs, sums, held, measured, strict=True)
    )
    return FidelityReport(device.name, device.emulated, fit, error_stats(sums, meds), samples)


def _blocks(arch: Any) -> list[BlockSignature]:
    return list(arch.blocks())


def fit_predictor(
    config: Config,
    device: DeviceSpec,
    count: int = 30,
    *,
    seed: int = 0,
    trials: int | None = None,
    space_config: Config | None = None,
    source: SessionSource | None = None,
    progress: Progress = ignore_progress,
) -> FidelityReport:
    """Fill the table if needed, measure `count` random networks, fit and save the correction line.

    `trials` (default [search] table_trials): the table's tuning budget; the networks are then compiled with
    its records at that budget, as the final compile ships them, and the line is kept for that table."""
    space_cfg = space_config or config
    space = SearchSpace(space_cfg.search.space,
                        count_classes(space_cfg.data, space_cfg.search.space, space_cfg.base_dir))
    archs = random_archs(space, count, seed)
    if len(archs) < 3:
        raise MeasurementError(f"the search space has only {len(archs)} distinct networks; a fit needs 3 or more")
    cache_dir = config.cache_dir()
    trials = config.table_trials() if trials is None else trials
    toolchain = table_toolchain(trials, device.threads)
    tuning = table_tuning(config, device, trials)
    own = source is None
    src = source if source is not None else SessionSource(device, cache_dir, config.measure).__enter__()
    try:
        with LatencyTable.in_cache(cache_dir, toolchain) as table:
            build_table(device, space.candidate_blocks(), table, cache_dir, config.measure, build_block, source=src,
                        tuning=tuning, progress=progress)
            predictor = TablePredictor.from_table(table, device)
        measured = measure_networks(device, archs, cache_dir, config.measure, src, tuning=tuning,
                                    toolchain=toolchain, progress=progress)
    finally:
        if own:
            src.close()
    report = evaluate(device, predictor, archs, measured)
    save_fit(cache_dir, device, toolchain, report.fit)
    return report

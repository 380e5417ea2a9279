"""Random architectures and the held-out evaluation of the predictor (synthetic measurements: logic only)."""

from __future__ import annotations

import dataclasses

import pytest

from nasc.devices.oracle import Measurement
from nasc.devices.predictor import TablePredictor
from nasc.devices.registry import resolve_device
from nasc.pipeline.fidelity import evaluate, random_archs
from nasc.search.settings import SpaceSettings
from nasc.search.space import SearchSpace


def _m(ms: float) -> Measurement:
    return Measurement(what="n", device="local", emulated=False, median_ms=ms, mean_ms=ms, p90_ms=ms, std_ms=0.0,
                       cv=0.0, robust_cv=0.0, min_ms=ms, max_ms=ms, warmup=0, number=1, repeat=3, attempts=1,
                       noisy=False, max_cv=0.1)


def test_random_archs_are_distinct_and_valid() -> None:
    space = SearchSpace(SpaceSettings(), 10)
    archs = random_archs(space, 30, seed=1)
    assert len(archs) == 30 and len({a.ops for a in archs}) == 30
    assert random_archs(space, 30, seed=1) == archs  # deterministic
    assert random_archs(space, 30, seed=2) != archs


def test_evaluate_reports_held_out_error_of_the_fit() -> None:
    space = SearchSpace(SpaceSettings(), 10)
    device = resolve_device("local")
    archs = random_archs(space, 20, seed=0)
    block_ms = {b.key(): 0.01 * (1 + b.expand) * b.kernel for b in space.candidate_blocks()}
    predictor = TablePredictor(device, block_ms)
    # A device whose whole networks cost 0.8 x the sum plus 0.05 ms: fusion and a fixed per-call cost.
    measured = [_m(0.8 * predictor.sum_ms(a.blocks()) + 0.05) for a in archs]
    report = evaluate(device, predictor, archs, measured)
    assert report.fit.scale == pytest.approx(0.8) and report.fit.overhead_ms == pytest.approx(0.05)
    assert report.fit.mape == pytest.approx(0.0, abs=1e-9) and report.fit.within_5pct == 1.0
    assert report.raw_sum["mape"] > 0.05  # the plain sum is off; the fit fixes it
    assert len(report.samples) == 20
    off = [dataclasses.replace(m, median_ms=m.median_ms * (1.3 if i % 2 else 0.7)) for i, m in enumerate(measured)]
    assert evaluate(device, predictor, archs, off).fit.within_10pct < 0.5

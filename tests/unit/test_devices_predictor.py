"""TablePredictor: the LatencyPredictor protocol over the table, and the fitted correction line."""

from __future__ import annotations

import numpy as np
import pytest

from nasc.devices.latency_table import LatencyKey, LatencyTable
from nasc.devices.oracle import Measurement
from nasc.devices.predictor import (
    PredictorFit,
    TablePredictor,
    cross_validated_fit,
    error_stats,
    fit_line,
    load_fit,
    save_fit,
)
from nasc.devices.registry import resolve_device
from nasc.errors import SearchError
from nasc.latency import LatencyPredictor
from nasc.signature import BlockSignature

A = BlockSignature("mbconv", 16, 16, 8, kernel=3, expand=3, idskip=True)
B = BlockSignature("mbconv", 16, 24, 8, kernel=5, expand=6, stride=2)
Z = BlockSignature("zero", 16, 16, 8, idskip=True)


def _m(ms: float, noisy: bool = False) -> Measurement:
    return Measurement(what="x", device="local", emulated=False, median_ms=ms, mean_ms=ms, p90_ms=ms, std_ms=0.0,
                       cv=0.0, robust_cv=0.0, min_ms=ms, max_ms=ms, warmup=0, number=1, repeat=3, attempts=1,
                       noisy=noisy, max_cv=0.1)


def test_error_stats() -> None:
    st = error_stats([1.04, 0.5, 2.0], [1.0, 1.0, 2.0])
    assert st["mape"] == pytest.approx((0.04 + 0.5 + 0.0) / 3)
    assert st["within_5pct"] == pytest.approx(2 / 3) and st["within_10pct"] == pytest.approx(2 / 3)


def test_fit_line_recovers_a_known_line() -> None:
    x = np.linspace(0.1, 2.0, 12)
    scale, overhead = fit_line(x, 1.3 * x + 0.05)
    assert scale == pytest.approx(1.3) and overhead == pytest.approx(0.05)
    assert fit_line([1.0], [1.2]) == pytest.approx((1.0, 0.2))  # too few points: overhead only


def test_cross_validation_reports_held_out_error() -> None:
    device = resolve_device("local")
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 2.0, 30)
    y = 1.2 * x + 0.1
    fit, held = cross_validated_fit(device, x, y)
    assert fit.mape == pytest.approx(0.0, abs=1e-9) and fit.within_5pct == 1.0 and len(held) == 30
    noisy_y = y * rng.uniform(0.8, 1.2, 30)
    fit2, _ = cross_validated_fit(device, x, noisy_y)
    assert fit2.mape > 0.03 and fit2.within_5pct < 1.0


def test_predictor_from_table(tmp_path) -> None:
    device = resolve_device("local")
    with LatencyTable.in_cache(tmp_path, "tc") as table:
        table.put(LatencyKey.for_block(A, device, "tc"), _m(0.2))
        table.put(LatencyKey.for_block(B, device, "tc"), _m(0.5, noisy=True))
        predictor = TablePredictor.from_table(table, device, tmp_path)
    assert isinstance(predictor, LatencyPredictor)
    assert predictor.block_ms(A) == 0.2 and predictor.block_ms(Z) == 0.0
    assert predictor.network_ms([A, Z, B]) == pytest.approx(0.7)
    assert B.key() in predictor.noisy
    fitted = predictor.with_fit(PredictorFit(device.fingerprint(), scale=2.0, overhead_ms=0.1))
    assert fitted.network_ms([A, B]) == pytest.approx(1.5)
    missing = BlockSignature("mbconv", 16, 24, 8, kernel=7, expand=6, stride=2)
    with pytest.raises(SearchError, match="nasc lut build --device local"):
        predictor.block_ms(missing)


def test_fit_is_saved_per_device(tmp_path) -> None:
    device = resolve_device("local")
    fit = PredictorFit(device.fingerprint(), 1.1, 0.02, 30, 0.03, 0.8, 0.97)
    save_fit(tmp_path, device, "tc", fit)
    assert load_fit(tmp_path, device, "tc") == fit
    assert load_fit(tmp_path, resolve_device("rpi4"), "tc") is None
    assert load_fit(tmp_path, device, "tc tuned=8") is None  # a line fitted for untuned entries stays theirs

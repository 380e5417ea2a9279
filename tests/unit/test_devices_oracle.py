"""Oracle statistics and the re-measure / flag logic (a scripted VM stands in for the device here only)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nasc.devices.oracle import Measurement, combine_passes, measure_vm, stats_ms, write_json_atomic
from nasc.devices.settings import MeasureSettings
from nasc.errors import MeasurementError


def test_stats_match_numpy() -> None:
    runs = [1.0, 1.2, 0.9, 1.1, 5.0]
    st = stats_ms(runs)
    assert st["median_ms"] == pytest.approx(np.median(runs))
    assert st["p90_ms"] == pytest.approx(np.percentile(runs, 90))
    assert st["std_ms"] == pytest.approx(np.std(runs, ddof=1))
    assert st["cv"] == pytest.approx(np.std(runs, ddof=1) / np.mean(runs))
    mad = np.median(np.abs(np.array(runs) - np.median(runs)))
    assert st["robust_cv"] == pytest.approx(1.4826 * mad / np.median(runs))
    # one preemption spike inflates CV but not the robust spread
    assert st["cv"] > 0.5 > st["robust_cv"]


@pytest.mark.parametrize("bad", [[], [1.0, math.nan, 1.0], [1.0, -1.0, 1.0]])
def test_stats_refuse_invalid_timings(bad: list[float]) -> None:
    with pytest.raises(MeasurementError):
        stats_ms(bad)


class _ScriptedVM:
    """Returns pre-scripted timings (seconds) from time_evaluator; records the protocol it was asked for."""

    def __init__(self, attempts: list[list[float]]) -> None:
        self.attempts = list(attempts)
        self.calls: list[tuple[int, int]] = []
        self.min_repeat_ms: list[int] = []
        self.inputs = None

    def set_input(self, func: str, *args: object) -> None:
        self.inputs = args

    def time_evaluator(self, name: str, dev: object, number: int, repeat: int, min_repeat_ms: int = 0):
        assert name == "invoke_stateful"
        self.calls.append((number, repeat))
        self.min_repeat_ms.append(min_repeat_ms)

        def run(func: str) -> object:
            assert func == "main"
            if repeat == 1:  # warm-up
                return type("R", (), {"results": [0.001]})()
            return type("R", (), {"results": self.attempts.pop(0)})()

        return run


def _measure(vm: _ScriptedVM, settings: MeasureSettings) -> Measurement:
    import tvm

    return measure_vm(vm, tvm.cpu(0), [np.zeros((1, 2), "float32")], settings, what="m", device="d", emulated=False)


def test_steady_result_needs_one_attempt() -> None:
    settings = MeasureSettings(warmup=2, number=4, repeat=5)
    vm = _ScriptedVM([[1e-3, 1.01e-3, 0.99e-3, 1e-3, 1.02e-3]])
    m = _measure(vm, settings)
    assert vm.calls == [(2, 1), (4, 5)]
    assert m.attempts == 1 and not m.noisy
    assert m.median_ms == pytest.approx(1.0)
    assert m.runs_ms == pytest.approx((1.0, 1.01, 0.99, 1.0, 1.02))


def test_warm_up_lasts_a_minimum_time_and_zero_skips_it() -> None:
    from nasc.devices.oracle import WARMUP_MIN_MS

    vm = _ScriptedVM([[1e-3] * 5])
    _measure(vm, MeasureSettings(warmup=2, number=4, repeat=5, min_repeat_ms=7))
    assert vm.min_repeat_ms == [WARMUP_MIN_MS, 7]  # the warm-up by time, the timings as configured
    vm = _ScriptedVM([[1e-3] * 5])
    _measure(vm, MeasureSettings(warmup=0, number=4, repeat=5))
    assert vm.calls == [(4, 5)]


def test_noisy_is_remeasured_then_flagged() -> None:
    settings = MeasureSettings(warmup=0, number=1, repeat=4, remeasure=2, max_cv=0.05, noise_metric="cv")
    noisy = [1e-3, 2e-3, 1e-3, 3e-3]
    vm = _ScriptedVM([noisy, noisy, [1e-3, 1.5e-3, 1e-3, 1.5e-3]])
    m = _measure(vm, settings)
    assert m.attempts == 3 and m.noisy
    assert m.median_ms == pytest.approx(1.25)  # the steadiest attempt is kept
    assert "NOISY" in m.summary()


def test_remeasure_stops_once_steady() -> None:
    settings = MeasureSettings(warmup=0, number=1, repeat=4, remeasure=3, max_cv=0.05, noise_metric="cv")
    vm = _ScriptedVM([[1e-3, 2e-3, 1e-3, 3e-3], [1e-3] * 4, [9e-3] * 4])
    m = _measure(vm, settings)
    assert m.attempts == 2 and not m.noisy and m.median_ms == pytest.approx(1.0)
    assert len(vm.attempts) == 1


def test_measurement_round_trip(tmp_path) -> None:
    import json

    vm = _ScriptedVM([[1e-3, 1.1e-3, 0.9e-3]])
    m = _measure(vm, MeasureSettings(warmup=0, number=1, repeat=3, max_cv=0.5))
    path = write_json_atomic(tmp_path / "m.json", m.to_dict())
    assert Measurement.from_dict(json.loads(path.read_text())) == m
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_settings_refuse_nonsense() -> None:
    from nasc.errors import ConfigError
    from nasc.pipeline.config import parse_config

    with pytest.raises(ConfigError, match="measure"):
        parse_config("[measure]\nrepeat = 1\n", "b.toml")
    with pytest.raises(ConfigError, match="noise_metric"):
        parse_config("[measure]\nnoise_metric = 'max'\n", "b.toml")
    assert parse_config("[measure]\nmax_cv = 0.2\n", "b.toml").measure.max_cv == 0.2
    with pytest.raises(ConfigError, match="passes"):
        parse_config("[measure]\npasses = 0\n", "b.toml")


def _pass(runs_ms: list[float], noisy: bool = False) -> Measurement:
    m = _measure(_ScriptedVM([[r * 1e-3 for r in runs_ms]]),
                 MeasureSettings(warmup=0, number=1, repeat=len(runs_ms), max_cv=0.5))
    return Measurement(**{**m.__dict__, "noisy": noisy})


def test_passes_keep_the_median_of_pass_medians() -> None:
    # the second pass fell in a slow minute: pooling every repeat would move the figure, the median of
    # the three pass medians does not
    steady, slow, again = _pass([1.0, 1.0, 1.02]), _pass([1.4, 1.41, 1.39]), _pass([1.01, 1.0, 1.0])
    m = combine_passes([steady, slow, again])
    assert m.median_ms == pytest.approx(1.0)
    assert float(np.median(m.runs_ms)) > 1.0  # (the pooled median would not be 1.0)
    assert m.runs_ms == steady.runs_ms + slow.runs_ms + again.runs_ms and m.repeat == 9
    assert m.max_ms == pytest.approx(1.41) and m.min_ms == pytest.approx(1.0)
    assert m.extra["passes"] == 3 and m.extra["pass_medians_ms"] == pytest.approx([1.0, 1.4, 1.0])
    assert combine_passes([steady]) is steady


def test_passes_are_noisy_when_most_were() -> None:
    a, b, c = _pass([1.0, 1.0, 1.0], True), _pass([1.0, 1.0, 1.0], True), _pass([1.0, 1.0, 1.0])
    assert combine_passes([a, b, c]).noisy and not combine_passes([a, c, c]).noisy
    with pytest.raises(MeasurementError):
        combine_passes([])

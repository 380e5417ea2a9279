"""The latency oracle: time a compiled library on the device with a stated protocol.

Protocol: ``warmup`` discarded runs (at least WARMUP_MIN_MS of them), then
``vm.time_evaluator("invoke_stateful", dev, number, repeat)``
on ``main`` (inputs set once with ``vm.set_input``); each of the ``repeat`` figures is the mean of
``number`` runs. Statistics over the repeats: median, p90, std, coefficient of variation, and a
robust CV (1.4826 x median absolute deviation / median). A result whose spread (``noise_metric``)
is above ``max_cv`` is measured again (up to ``remeasure`` times, the steadiest attempt kept) and,
if still noisy, returned with ``noisy=True``: callers show the flag, never hide it. A library timed in
several passes (``passes``) keeps the median of its pass medians (`combine_passes`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nasc.errors import MeasurementError

from .settings import MeasureSettings


@dataclass(frozen=True)
class Measurement:
    """Latency of one compiled library on one device."""

    what: str
    device: str
    emulated: bool
    median_ms: float
    mean_ms: float
    p90_ms: float
    std_ms: float
    cv: float
    robust_cv: float
    min_ms: float
    max_ms: float
    warmup: int
    number: int
    repeat: int
    attempts: int
    noisy: bool
    max_cv: float
    noise_metric: str = "cv"
    address: str = ""
    target: str = ""
    tvm_version: str = ""
    measured_at: str = ""
    runs_ms: tuple[float, ...] = field(default_factory=tuple)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        data = asdict(self)
        data["runs_ms"] = list(self.runs_ms)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        data["runs_ms"] = tuple(float(x) for x in data.get("runs_ms", ()))
        data["extra"] = dict(data.get("extra", {}))
        return cls(**data)

    def summary(self) -> str:
        """One readable line."""
        label = " EMULATED" if self.emulated else ""
        flag = ""
        if self.noisy:
            flag = f" NOISY ({self.noise_metric} above {self.max_cv:.0%} after {self.attempts} attempts)"
        return (
            f"{self.what} on {self.device}{label}: median {self.median_ms:.4f} ms, p90 {self.p90_ms:.4f} ms, "
            f"std {self.std_ms:.4f} ms, CV {self.cv:.1%}, robust CV {self.robust_cv:.1%} "
            f"({self.repeat} x {self.number} runs){flag}"
        )

    def spread(self) -> float:
        """The spread that decided `noisy`."""
        return self.robust_cv if self.noise_metric == "robust_cv" else self.cv


def stats_ms(runs_ms: Sequence[float]) -> dict[str, float]:
    """median, mean, p90, std (sample), cv, robust_cv (1.4826 MAD / median), min, max of per-repeat timings."""
    arr = np.asarray(runs_ms, dtype=np.float64)
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise MeasurementError(f"invalid timings from the device: {list(runs_ms)!r}")
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    median = float(np.median(arr))
    mad = float(np.median(np.abs(arr - median)))
    return {
        "median_ms": median,
        "mean_ms": mean,
        "p90_ms": float(np.percentile(arr, 90)),
        "std_ms": std,
        "cv": std / mean if mean > 0 else 0.0,
        "robust_cv": 1.4826 * mad / median if median > 0 else 0.0,
        "min_ms": float(arr.min()),
        "max_ms": float(arr.max()),
    }


# A warm-up (when ``warmup`` > 0) lasts at least this long. In a fresh process TVM's first ~20 ms of
# runs were 2.4x slower on a 2-core x86 host (mbconv-32 in one process: median 75 us with 5 warm-up
# runs, 33 us once warm), so a count of runs left small blocks timed cold.
WARMUP_MIN_MS = 100


def time_vm_once(vm: Any, dev: Any, settings: MeasureSettings, func: str = "main") -> list[float]:
    """One attempt of the protocol on a VM whose inputs are already set; per-repeat means in ms."""
    if settings.warmup:
        vm.time_evaluator("invoke_stateful", dev, number=settings.warmup, repeat=1, min_repeat_ms=WARMUP_MIN_MS)(func)
    result = vm.time_evaluator(
        "invoke_stateful", dev, number=settings.number, repeat=settings.repeat, min_repeat_ms=settings.min_repeat_ms
    )(func)
    return [float(r) * 1e3 for r in result.results]


def set_inputs(vm: Any, dev: Any, inputs: Sequence[np.ndarray], func: str = "main") -> None:
    """Copy `inputs` to the device and bind them to `func` for stateful timing."""
    import tvm

    vm.set_input(func, *[tvm.runtime.tensor(np.ascontiguousarray(x), dev) for x in inputs])


def measure_vm(
    vm: Any,
    dev: Any,
    inputs: Sequence[np.ndarray],
    settings: MeasureSettings,
    *,
    what: str,
    device: str,
    emulated: bool,
    address: str = "",
    target: str = "",
    extra: dict[str, Any] | None = None,
) -> Measurement:
    """Time `vm`'s ``main`` on `dev` with the protocol; re-measure when noisy and flag if it stays so."""
    import tvm

    set_inputs(vm, dev, inputs)
    best: tuple[dict[str, float], list[float]] | None = None
    attempts = 0
    for _ in range(settings.remeasure + 1):
        attempts += 1
        runs = time_vm_once(vm, dev, settings)
        st = stats_ms(runs)
        if best is None or st[settings.noise_metric] < best[0][settings.noise_metric]:
            best = (st, runs)
        if st[settings.noise_metric] <= settings.max_cv:
            break
    assert best is not None
    st, runs = best
    return Measurement(
        what=what,
        device=device,
        emulated=emulated,
        warmup=settings.warmup,
        number=settings.number,
        repeat=settings.repeat,
        attempts=attempts,
        noisy=st[settings.noise_metric] > settings.max_cv,
        max_cv=settings.max_cv,
        noise_metric=settings.noise_metric,
        address=address,
        target=target,
        tvm_version=str(tvm.__version__),
        measured_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        runs_ms=tuple(runs),
        extra=dict(extra or {}),
        **st,
    )


def combine_passes(passes: Sequence[Measurement]) -> Measurement:
    """One figure from the timings of one library taken in separate passes: the median of the pass medians
    (a pass that fell in a slow minute of a shared host moves it least); the spreads, p90, min and max over
    every repeat of every pass; noisy when most passes were."""
    if not passes:
        raise MeasurementError("no passes to combine")
    if len(passes) == 1:
        return passes[0]
    runs = [r for m in passes for r in m.runs_ms]
    pooled = stats_ms(runs)
    pooled["median_ms"] = float(np.median([m.median_ms for m in passes]))
    last = passes[-1]
    return dataclasses.replace(
        last,
        **pooled,
        repeat=len(runs),
        attempts=sum(m.attempts for m in passes),
        noisy=sum(m.noisy for m in passes) * 2 > len(passes),
        runs_ms=tuple(runs),
        extra={**last.extra, "passes": len(passes), "pass_medians_ms": [m.median_ms for m in passes]},
    )


def write_json_atomic(path: Path, data: Any) -> Path:
    """Write JSON to `path` via a temporary file and os.replace (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

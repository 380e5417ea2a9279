"""LatencyPredictor from the latency table: sum of measured blocks, corrected by a fitted line.

``network_ms = scale * sum(block_ms) + overhead_ms``; the line is fitted robustly (Theil-Sen) on
end-to-end measurements of whole networks on the same device (fusion across block boundaries and
the VM's per-call cost are what the sum misses). Its error is reported from held-out networks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nasc.errors import InputError, SearchError
from nasc.signature import BlockSignature

from .latency_table import LatencyTable
from .oracle import write_json_atomic
from .spec import DeviceSpec


@dataclass(frozen=True)
class PredictorFit:
    """The correction line and how well it did."""

    device_fingerprint: str
    scale: float = 1.0
    overhead_ms: float = 0.0
    samples: int = 0
    mape: float | None = None  # held-out mean absolute percentage error (fraction, 0.05 = 5 %)
    within_5pct: float | None = None  # share of held-out networks within +-5 %
    within_10pct: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PredictorFit:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


def error_stats(predicted_ms: Sequence[float], measured_ms: Sequence[float]) -> dict[str, float]:
    """MAPE and the shares within +-5 % and +-10 % (fractions)."""
    p = np.asarray(predicted_ms, dtype=np.float64)
    m = np.asarray(measured_ms, dtype=np.float64)
    if p.shape != m.shape or p.size == 0 or np.any(m <= 0):
        raise ValueError("need equally long, non-empty lists with positive measured latencies")
    rel = np.abs(p - m) / m
    return {"mape": float(rel.mean()), "within_5pct": float((rel <= 0.05).mean()),
            "within_10pct": float((rel <= 0.10).mean())}


def fit_line(sum_ms: Sequence[float], measured_ms: Sequence[float]) -> tuple[float, float]:
    """Robust ``measured = scale * sum + overhead`` (Theil-Sen: median pairwise slope, median intercept).

    Robust because a busy host inflates some end-to-end measurements as a whole (their spread stays
    low, so they are not flagged); least squares would let those few pull the line. Below 3 samples,
    or with no spread in the sums: overhead only, scale 1.
    """
    x = np.asarray(sum_ms, dtype=np.float64)
    y = np.asarray(measured_ms, dtype=np.float64)
    if x.size == 0:
        return 1.0, 0.0
    if x.size < 3 or np.ptp(x) == 0:
        return 1.0, float(np.median(y - x))
    i, j = np.triu_indices(x.size, 1)
    dx = x[j] - x[i]
    ok = dx != 0
    scale = float(np.median((y[j] - y[i])[ok] / dx[ok]))
    overhead = float(np.median(y - scale * x))
    return scale, overhead


def cross_validated_fit(
    device: DeviceSpec, sum_ms: Sequence[float], measured_ms: Sequence[float], folds: int = 5
) -> tuple[PredictorFit, list[float]]:
    """Fit on all samples; report error of k-fold held-out predictions. Returns (fit, held-out predictions)."""
    x = np.asarray(sum_ms, dtype=np.float64)
    y = np.asarray(measured_ms, dtype=np.float64)
    n = x.size
    held = np.zeros(n)
    k = max(2, min(folds, n))
    order = np.arange(n)
    for f in range(k):
        test = order[f::k]
        train = np.setdiff1d(order, test)
        scale, overhead = fit_line(x[train], y[train])
        held[test] = scale * x[test] + overhead
    scale, overhead = fit_line(x, y)
    stats = error_stats(held, y) if n else {"mape": None, "within_5pct": None, "within_10pct": None}
    fit = PredictorFit(device.fingerprint(), scale, overhead, n, stats["mape"], stats["within_5pct"],
                       stats["within_10pct"])
    return fit, [float(v) for v in held]


def fit_path(cache_dir: Path, device: DeviceSpec, toolchain: str) -> Path:
    """Where the fitted line of `device` for the table entries of `toolchain` (untuned or tuned, threads) is
    kept: a line fitted on untuned networks never corrects a tuned table."""
    digest = hashlib.sha256(toolchain.encode()).hexdigest()[:10]
    return Path(cache_dir) / "predictor" / f"{device.name}-{device.fingerprint()}-{digest}.json"


def save_fit(cache_dir: Path, device: DeviceSpec, toolchain: str, fit: PredictorFit) -> Path:
    """Store the fit atomically."""
    return write_json_atomic(fit_path(cache_dir, device, toolchain), fit.to_dict())


def load_fit(cache_dir: Path, device: DeviceSpec, toolchain: str) -> PredictorFit | None:
    """The stored fit for `device` and `toolchain` (None when there is none)."""
    path = fit_path(cache_dir, device, toolchain)
    if not path.is_file():
        return None
    try:
        fit = PredictorFit.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path}: unreadable predictor fit ({exc}); delete it and refit") from None
    return fit if fit.device_fingerprint == device.fingerprint() else None


class TablePredictor:
    """nasc.latency's LatencyPredictor for one device, backed by the measured table."""

    def __init__(self, device: DeviceSpec, block_ms: dict[str, float], fit: PredictorFit | None = None,
                 noisy: frozenset[str] = frozenset()) -> None:
        self.device = device
        self._block_ms = dict(block_ms)
        self.fit = fit or PredictorFit(device.fingerprint())
        self.noisy = noisy

    @classmethod
    def from_table(cls, table: LatencyTable, device: DeviceSpec, cache_dir: Path | None = None) -> TablePredictor:
        """Current entries for `device` (this TVM, this target) and its stored fit, if any."""
        ms: dict[str, float] = {}
        noisy = set()
        for entry in table.entries(device, current_tvm_only=True):
            ms[entry.key.block] = entry.median_ms
            if entry.measurement.noisy:
                noisy.add(entry.key.block)
        fit = load_fit(cache_dir, device, table.toolchain) if cache_dir is not None else None
        return cls(device, ms, fit, frozenset(noisy))

    def with_fit(self, fit: PredictorFit) -> TablePredictor:
        """A copy using `fit`."""
        return TablePredictor(self.device, self._block_ms, fit, self.noisy)

    def __len__(self) -> int:
        return len(self._block_ms)

    def knows(self, block: BlockSignature) -> bool:
        """Whether the table holds `block` (``zero`` costs nothing and is always known)."""
        return block.op == "zero" or block.key() in self._block_ms

    def block_ms(self, block: BlockSignature) -> float:
        """Measured latency of one block (``zero`` costs 0)."""
        if block.op == "zero":
            return 0.0
        try:
            return self._block_ms[block.key()]
        except KeyError:
            raise SearchError(
                f"the latency table has no entry for {block.key()} on {self.device.name} "
                f"(target {self.device.target_json()}); run `nasc lut build --device {self.device.name}`"
            ) from None

    def sum_ms(self, blocks: Sequence[BlockSignature]) -> float:
        """Plain sum of the blocks' latencies."""
        return float(sum(self.block_ms(b) for b in blocks))

    def network_ms(self, blocks: Sequence[BlockSignature]) -> float:
        """``scale * sum + overhead``."""
        return self.fit.scale * self.sum_ms(blocks) + self.fit.overhead_ms


def load_predictor(cache_dir: Path, device: DeviceSpec, toolchain: str, *, with_fit: bool = True) -> TablePredictor:
    """The predictor the search uses: the cache's table for `device` and `toolchain`, plus its saved fit
    (if `nasc lut fit` ran and `with_fit`)."""
    with LatencyTable.in_cache(cache_dir, toolchain) as table:
        predictor = TablePredictor.from_table(table, device, cache_dir if with_fit else None)
    if len(predictor) == 0:
        raise SearchError(
            f"the latency table in {Path(cache_dir)} has no entries for {device.name} with this target and "
            f"toolchain ({toolchain}); "
            f"run `nasc lut build --device {device.name}` first"
        )
    return predictor

"""[measure] settings of build.toml (plain data, no TVM)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class MeasureSettings:
    """[measure]: the timing protocol and how hard to try when a device misbehaves.

    One measurement = ``warmup`` discarded runs (more if they take less than the oracle's
    WARMUP_MIN_MS; none with 0), then ``repeat`` timings, each the mean of
    ``number`` runs. A result whose spread (``noise_metric``) exceeds ``max_cv`` is re-measured up
    to ``remeasure`` times, then flagged ``noisy`` (never silently used as a clean figure).

    ``passes``: where many libraries are timed together (the latency table, the predictor's sample
    networks), each is timed once per pass, the passes one after another over the whole set, and the
    median of its pass medians kept. On a shared host the speed drifts over minutes; within one
    measurement the repeats agree, so a block timed in a slow minute was off by the whole drift.
    Spreading the passes over the build puts each library's figure in several minutes at once.
    """

    warmup: int = 5
    number: int = 10
    repeat: int = 30
    max_cv: float = 0.10
    # Which spread decides "noisy": "cv" (std/mean) or "robust_cv" (1.4826 * MAD / median). On a
    # shared host, rare preemptions inflate std while the median stays right; robust_cv judges the
    # figure nasc actually uses. Both are always reported.
    noise_metric: Literal["cv", "robust_cv"] = "robust_cv"
    remeasure: int = 2
    passes: int = 3  # timings of each library in a set, spread over the set's timing (median kept)
    min_repeat_ms: int = 0  # raise `number` until one repeat lasts this long (0: keep `number`)
    session_timeout_s: float = 300.0  # the server kills a session older than this (hung runs)
    connect_timeout_s: float = 30.0  # how long to wait for a server (tracker queue included)
    retries: int = 3  # attempts after a dropped session, each on a fresh session
    backoff_s: float = 1.0  # first wait between attempts; doubles each time

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise ValueError("warmup must be >= 0")
        if self.number < 1 or self.repeat < 1:
            raise ValueError("number and repeat must be >= 1")
        if self.repeat < 3:
            raise ValueError("repeat must be >= 3 (median, p90 and CV need several timings)")
        if not self.max_cv > 0:
            raise ValueError("max_cv must be > 0")
        if self.passes < 1:
            raise ValueError("passes must be >= 1")
        if self.remeasure < 0 or self.retries < 0:
            raise ValueError("remeasure and retries must be >= 0")
        if self.session_timeout_s <= 0 or self.connect_timeout_s <= 0 or self.backoff_s < 0:
            raise ValueError("session_timeout_s and connect_timeout_s must be > 0, backoff_s >= 0")

"""SearchContext: what the runtime hands a strategy (settings, data, space, the device's latencies, one RNG)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nasc.events import Progress
from nasc.latency import LatencyPredictor

from .data import Dataset
from .objective import LatencyCosts
from .settings import SearchSettings
from .space import SearchSpace


@dataclass(frozen=True)
class SearchContext:
    """One search's shared state. Every random draw of the strategy goes through `gen`, so a resumed
    search (the runtime restores `gen`) repeats an uninterrupted one exactly."""

    settings: SearchSettings
    data: Dataset
    space: SearchSpace
    predictor: LatencyPredictor
    costs: LatencyCosts
    gen: torch.Generator
    progress: Progress

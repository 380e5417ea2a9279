"""Random search with weight sharing: NAO's peer in the benchmarks, on the same supernet and pool machinery.

The supernet trains on paths drawn from a growing pool, as in NAO; each round scores the pool with the
shared weights and adds random unseen architectures instead of decoded ones. The runtime picks the best
scored architecture within the budget, as for NAO, so the two differ only in where new candidates come from.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..context import SearchContext
from ..settings import NaoSettings
from .nao import Nao


class RandomSearch(Nao):
    """Random search (see the module docstring)."""

    stage = "random"

    def __init__(self, ctx: SearchContext) -> None:
        r = ctx.settings.random
        settings = dataclasses.replace(
            NaoSettings(), warmup_epochs=r.warmup_epochs, rounds=r.rounds, epochs_per_round=r.epochs_per_round,
            initial_pool=r.initial_pool, new_per_round=r.new_per_round, eval_images=r.eval_images,
            final_init=r.final_init, fill_random=True,
        )
        super().__init__(ctx, settings)

    def _decode_new(self, index: int) -> tuple[list[tuple[str, ...]], dict[str, Any]]:
        return [], {}

    def _heldout_tau(self, new: list[tuple[str, ...]]) -> float | None:
        return None  # no predictor


STRATEGY = RandomSearch

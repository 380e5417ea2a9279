"""The latency side of the search objective: per-op costs from a predictor, expected latency, losses.

Expected latency (the paper's E[LAT]) = fixed blocks (stem, head) + sum over layers of
softmax(alpha_layer) . cost_layer, where cost_layer[j] = predictor.block_ms(op j at that layer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from nasc.errors import SearchError
from nasc.latency import LatencyPredictor

from .path_level.cell import PathArch
from .settings import ProxylessSettings
from .space import ArchSpec, SearchSpace


@dataclass(frozen=True)
class LatencyCosts:
    """Predicted milliseconds of every candidate of every layer (zero costs 0), plus the fixed blocks."""

    fixed_ms: float
    layer_ms: tuple[tuple[float, ...], ...]  # [layer][op index], in the layer's op order

    @classmethod
    def from_predictor(cls, space: SearchSpace, predictor: LatencyPredictor) -> LatencyCosts:
        """Ask `predictor` once per distinct block of `space`."""
        cache: dict[object, float] = {}

        def ms(sig: object) -> float:
            if sig not in cache:
                value = float(predictor.block_ms(sig))  # type: ignore[arg-type]
                if not math.isfinite(value) or value < 0:
                    raise SearchError(f"latency predictor returned {value!r} ms for block {sig.key()}")  # type: ignore[attr-defined]
                cache[sig] = value
            return cache[sig]

        fixed = ms(space.stem_signature()) + ms(space.head_signature())
        layers = tuple(
            tuple(0.0 if op == "zero" else ms(layer.signature(op)) for op in layer.ops) for layer in space.layers()
        )
        return cls(fixed_ms=fixed, layer_ms=layers)

    def tensors(self) -> list[torch.Tensor]:
        """Per-layer cost vectors."""
        return [torch.tensor(costs, dtype=torch.float32) for costs in self.layer_ms]

    def arch_ms(self, space: SearchSpace, ops: Sequence[str]) -> float:
        """Sum of block latencies of one architecture (no fitted overhead)."""
        total = self.fixed_ms
        for layer, op, costs in zip(space.layers(), ops, self.layer_ms, strict=True):
            total += costs[layer.ops.index(op)]
        return total


def expected_latency_ms(probs: Sequence[torch.Tensor], costs: Sequence[torch.Tensor], fixed_ms: float) -> torch.Tensor:
    """E[LAT] = fixed + sum_layers probs . costs (differentiable in probs)."""
    total = torch.tensor(fixed_ms, dtype=torch.float32)
    for p, c in zip(probs, costs, strict=True):
        total = total + (p * c).sum()
    return total


def latency_loss(ce: torch.Tensor, expected_ms: torch.Tensor, budget_ms: float | None,
                 settings: ProxylessSettings) -> torch.Tensor:
    """CE with the latency term: ``mul`` CE*(log LAT/log T)^beta, ``add`` CE + lambda*LAT/T,
    ``hinge`` CE + lambda*max(0, LAT/T - 1) (no pull under the budget: the search may spend all of it).

    The log form is taken in microseconds so both logarithms are positive for every budget the
    settings accept (> 0.001 ms); in milliseconds a sub-millisecond budget would flip the sign.
    Without a budget (latency_ms unset) the loss is CE alone.
    """
    budget = budget_ms
    if budget is None:
        return ce
    if settings.latency_loss == "mul":
        lat_us = (expected_ms * 1000.0).clamp_min(1.0 + 1e-6)
        return ce * (torch.log(lat_us) / math.log(budget * 1000.0)) ** settings.beta
    if settings.latency_loss == "hinge":
        return ce + settings.latency_lambda * torch.relu(expected_ms / budget - 1.0)
    return ce + settings.latency_lambda * expected_ms / budget


def rl_reward(accuracy: float, latency_ms: float, budget_ms: float | None, settings: ProxylessSettings) -> float:
    """REINFORCE reward: ``mul`` acc*(T/LAT)^beta (the paper's form), ``add`` acc - lambda*LAT/T,
    ``hinge`` acc - lambda*max(0, LAT/T - 1)."""
    budget = budget_ms
    if budget is None:
        return accuracy
    if settings.latency_loss == "mul":
        return accuracy * (budget / max(latency_ms, 1e-9)) ** settings.beta
    if settings.latency_loss == "hinge":
        return accuracy - settings.latency_lambda * max(0.0, latency_ms / budget - 1.0)
    return accuracy - settings.latency_lambda * latency_ms / budget


def predicted_ms(arch: ArchSpec | PathArch, predictor: LatencyPredictor) -> float:
    """The predictor's latency of a whole architecture (either kind: both list their blocks)."""
    return float(predictor.network_ms(arch.blocks()))


def block_sum_ms(arch: ArchSpec | PathArch, predictor: LatencyPredictor) -> float:
    """Sum of the predictor's latencies of the architecture's blocks (no fitted overhead).

    Summed stem and head first, then the layers in order: the order of ``LatencyCosts.arch_ms``, so an
    ArchSpec gets the very same float as before (a skipped layer there adds 0.0, which changes nothing).
    """
    blocks = arch.blocks()
    total = float(predictor.block_ms(blocks[0])) + float(predictor.block_ms(blocks[-1]))
    for block in blocks[1:-1]:
        total += float(predictor.block_ms(block))
    return total

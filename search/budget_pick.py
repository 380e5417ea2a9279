"""Spend the budget: the most probable architecture whose predicted latency lands just under it.

A search's argmax path often lands well under the budget (an additive latency term keeps pulling
below it; on a small task the supernet's preferences are flat). The user asked for a network of up to
T ms, so the pick is the architecture of highest summed log-probability whose predicted latency lies
in [fill * T, T]. Latency is additive over the space's layers (a layer's block does not depend on the
ops of others), so a knapsack over latency bins finds it exactly up to the bin width; every candidate
bin is then checked with the predictor's own figure for the whole network.

Where the window is empty: the most probable architecture under T (the space holds nothing between
fill * T and T, which the pick says), or, when nothing fits, the fastest one (the pick says so).

A strategy that scores whole architectures (NAO's pool) is picked among them by the same rule
(`pick_among`): the best score in the window, else the best under T.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .objective import LatencyCosts

BINS = 2000  # latency bins over [0, the space's largest network]; the exact check runs on each bin's best

PICK_IN_WINDOW = "in-window"  # the most probable architecture in [fill * T, T]
PICK_NOTHING_BIGGER = "space-too-small"  # nothing in the window: the space's networks are all under fill * T
PICK_GAP = "window-empty"  # nothing in the window, though bigger networks exist (all over T)
PICK_NOTHING_FITS = "nothing-fits"  # every network of the space is over T: the fastest was chosen


@dataclass(frozen=True)
class BudgetPick:
    """The architecture chosen for a budget, and what the space allowed."""

    ops: tuple[str, ...]
    predicted_ms: float
    budget_ms: float
    fill: float
    verdict: str  # one of the PICK_* values
    argmax_ops: tuple[str, ...]
    argmax_ms: float
    space_min_ms: float  # the predictor's figures for the space's fastest and slowest networks
    space_max_ms: float

    @property
    def budget_used(self) -> float:
        """predicted / budget."""
        return self.predicted_ms / self.budget_ms

    def message(self) -> str:
        """One line for the summary."""
        used = f"{self.predicted_ms:.4f} ms predicted, {self.budget_used:.0%} of the {self.budget_ms:g} ms budget"
        if self.verdict == PICK_IN_WINDOW:
            return used
        if self.verdict == PICK_NOTHING_BIGGER:
            return (f"{used}: the space holds nothing bigger than {self.space_max_ms:.4f} ms "
                    f"(widen [search.space] to spend the budget)")
        if self.verdict == PICK_GAP:
            return f"{used}: no network of the space lands between {self.fill:.0%} and 100 % of the budget"
        return (f"{used}: nothing in the space fits the budget; the fastest network "
                f"({self.space_min_ms:.4f} ms) was chosen")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        data = asdict(self)
        data["ops"], data["argmax_ops"] = list(self.ops), list(self.argmax_ops)
        data["budget_used"] = round(self.budget_used, 6)
        data["message"] = self.message()
        return data


def pick_within_budget(
    layer_ops: Sequence[Sequence[str]],
    layer_scores: Sequence[Sequence[float]],
    costs: LatencyCosts,
    budget_ms: float,
    network_ms: Callable[[tuple[str, ...]], float],
    *,
    fill: float = 0.9,
) -> BudgetPick:
    """Choose one op per layer: the highest summed score (log-probability) whose `network_ms` lies in
    [fill * budget_ms, budget_ms] (see the module docstring for the fallbacks)."""
    ranked = [ops for _, ops in _best_per_bin(layer_ops, layer_scores, costs.layer_ms)]  # highest score first
    return _first_that_fits(ranked, _per_layer(max, layer_ops, layer_scores), layer_ops, costs, budget_ms,
                            network_ms, fill)


def pick_among(
    scored: Sequence[tuple[tuple[str, ...], float]],
    layer_ops: Sequence[Sequence[str]],
    costs: LatencyCosts,
    budget_ms: float,
    network_ms: Callable[[tuple[str, ...]], float],
    *,
    fill: float = 0.9,
) -> BudgetPick:
    """Choose among scored architectures (ops, score; higher is better): the best in [fill * budget_ms,
    budget_ms], else the best under budget_ms, else the space's fastest network; `argmax` is the best
    scored one wherever it lands."""
    if not scored:
        raise ValueError("no scored architectures to pick among")
    ranked = [ops for ops, _ in sorted(scored, key=lambda item: -item[1])]
    return _first_that_fits(ranked, ranked[0], layer_ops, costs, budget_ms, network_ms, fill)


def _first_that_fits(ranked: Sequence[tuple[str, ...]], argmax: tuple[str, ...], layer_ops: Sequence[Sequence[str]],
                     costs: LatencyCosts, budget_ms: float, network_ms: Callable[[tuple[str, ...]], float],
                     fill: float) -> BudgetPick:
    """The first of `ranked` (best first) in [fill * budget_ms, budget_ms], else the first under budget_ms,
    else the space's fastest network, with the verdict that says which."""
    if not 0 < fill <= 1:
        raise ValueError(f"fill must be in (0, 1], got {fill}")
    fastest, slowest = _per_layer(min, layer_ops, costs.layer_ms), _per_layer(max, layer_ops, costs.layer_ms)
    space_min, space_max = network_ms(fastest), network_ms(slowest)
    figures = (argmax, network_ms(argmax), space_min, space_max)
    under: tuple[tuple[str, ...], float] | None = None
    for ops in ranked:
        ms = network_ms(ops)
        if fill * budget_ms <= ms <= budget_ms:
            return BudgetPick(ops, ms, budget_ms, fill, PICK_IN_WINDOW, *figures)
        if ms <= budget_ms and under is None:
            under = (ops, ms)
    if under is not None:
        verdict = PICK_NOTHING_BIGGER if space_max < fill * budget_ms else PICK_GAP
        return BudgetPick(under[0], under[1], budget_ms, fill, verdict, *figures)
    return BudgetPick(fastest, space_min, budget_ms, fill, PICK_NOTHING_FITS, *figures)


def _per_layer(pick: Callable[..., int], layer_ops: Sequence[Sequence[str]],
               values: Sequence[Sequence[float]]) -> tuple[str, ...]:
    """Per layer, the op whose value `pick` (min or max) selects."""
    return tuple(ops[pick(range(len(ops)), key=row.__getitem__)] for ops, row in zip(layer_ops, values, strict=True))


def _best_per_bin(layer_ops: Sequence[Sequence[str]], layer_scores: Sequence[Sequence[float]],
                  layer_ms: Sequence[Sequence[float]]) -> list[tuple[float, tuple[str, ...]]]:
    """For each latency bin (the layers' block sum, rounded), the architecture of highest summed score;
    the list is sorted by score, highest first."""
    top = sum(max(c) for c in layer_ms) or 1.0
    width = top / BINS
    best: dict[int, tuple[float, tuple[int, ...]]] = {0: (0.0, ())}
    for scores, costs in zip(layer_scores, layer_ms, strict=True):
        nxt: dict[int, tuple[float, tuple[int, ...]]] = {}
        for b, (score, path) in best.items():
            for j, (s, c) in enumerate(zip(scores, costs, strict=True)):
                if not math.isfinite(s):
                    continue
                key = b + round(c / width)
                value = score + s
                if key not in nxt or value > nxt[key][0]:
                    nxt[key] = (value, (*path, j))
        best = nxt
    ranked = sorted(best.values(), key=lambda item: -item[0])
    return [(score, tuple(ops[j] for ops, j in zip(layer_ops, path, strict=True))) for score, path in ranked]

"""The pick within the budget: the most probable architecture in [fill*T, T], checked against brute force."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from nasc.search.budget_pick import (
    PICK_GAP,
    PICK_IN_WINDOW,
    PICK_NOTHING_BIGGER,
    PICK_NOTHING_FITS,
    pick_among,
    pick_within_budget,
)
from nasc.search.objective import LatencyCosts

OPS = ("k3_e3", "k3_e6", "k5_e6", "zero")


def _problem(seed: int, layers: int = 5):
    rng = random.Random(seed)
    costs = LatencyCosts(fixed_ms=0.05, layer_ms=tuple(
        tuple(0.0 if op == "zero" else rng.uniform(0.01, 0.2) for op in OPS) for _ in range(layers)))
    scores = [[math.log(p / sum(row)) for p in row] for row in
              ([rng.uniform(0.05, 1.0) for _ in OPS] for _ in range(layers))]
    return costs, scores


def _network_ms(costs: LatencyCosts, overhead: float = 1.1):
    def ms(ops: tuple[str, ...]) -> float:
        return overhead * (costs.fixed_ms + sum(c[OPS.index(op)] for op, c in zip(ops, costs.layer_ms, strict=True)))
    return ms


def _brute_force(costs, scores, budget, fill, ms):
    best = None
    for ops in itertools.product(OPS, repeat=len(scores)):
        value = sum(s[OPS.index(op)] for op, s in zip(ops, scores, strict=True))
        if fill * budget <= ms(ops) <= budget and (best is None or value > best[0]):
            best = (value, ops)
    return best


@pytest.mark.parametrize("seed", range(8))
def test_pick_is_the_most_probable_architecture_in_the_window(seed: int) -> None:
    costs, scores = _problem(seed)
    ms = _network_ms(costs)
    budget = 0.6
    pick = pick_within_budget([OPS] * 5, scores, costs, budget, ms, fill=0.9)
    expected = _brute_force(costs, scores, budget, 0.9, ms)
    assert expected is not None
    assert pick.verdict == PICK_IN_WINDOW
    assert 0.9 * budget <= pick.predicted_ms <= budget
    pick_score = sum(s[OPS.index(op)] for op, s in zip(pick.ops, scores, strict=True))
    assert pick_score == pytest.approx(expected[0], abs=1e-9)


def test_argmax_in_the_window_is_kept() -> None:
    costs, scores = _problem(3)
    ms = _network_ms(costs)
    argmax = tuple(OPS[max(range(len(OPS)), key=s.__getitem__)] for s in scores)
    budget = ms(argmax) / 0.95
    pick = pick_within_budget([OPS] * 5, scores, costs, budget, ms)
    assert pick.ops == argmax == pick.argmax_ops


def test_space_too_small_keeps_the_most_probable_and_says_so() -> None:
    costs, scores = _problem(1)
    ms = _network_ms(costs)
    pick = pick_within_budget([OPS] * 5, scores, costs, 100.0, ms)
    assert pick.verdict == PICK_NOTHING_BIGGER
    assert pick.ops == pick.argmax_ops
    assert "nothing bigger" in pick.message() and f"{pick.space_max_ms:.4f}" in pick.message()


def test_nothing_fits_takes_the_fastest() -> None:
    costs, scores = _problem(2)
    ms = _network_ms(costs)
    pick = pick_within_budget([OPS] * 5, scores, costs, 0.01, ms)
    assert pick.verdict == PICK_NOTHING_FITS
    assert pick.predicted_ms == pytest.approx(pick.space_min_ms)
    assert pick.ops == ("zero",) * 5


def test_window_empty_between_two_networks() -> None:
    # One layer: 0.0 (zero) or 1.0 ms; fixed 0.1: networks at 0.1 and 1.1 ms; budget 1.0 -> nothing in [0.9, 1.0].
    costs = LatencyCosts(fixed_ms=0.1, layer_ms=((1.0, 0.0),))
    pick = pick_within_budget([("k3_e3", "zero")], [[math.log(0.9), math.log(0.1)]], costs, 1.0,
                              lambda ops: 0.1 + (1.0 if ops[0] == "k3_e3" else 0.0))
    assert pick.verdict == PICK_GAP and pick.ops == ("zero",)


@pytest.mark.parametrize("seed", range(4))
def test_pick_among_scored_architectures_takes_the_best_in_the_window(seed: int) -> None:
    costs, _ = _problem(seed)
    ms = _network_ms(costs)
    rng = random.Random(seed)
    scored = [(tuple(rng.choice(OPS) for _ in range(5)), rng.random()) for _ in range(40)]
    budget = sorted(ms(ops) for ops, _ in scored)[30]  # most fit; some land in the window
    pick = pick_among(scored, [OPS] * 5, costs, budget, ms, fill=0.8)
    window = [(ops, v) for ops, v in scored if 0.8 * budget <= ms(ops) <= budget]
    assert window, "the case must have candidates in the window"
    assert pick.verdict == PICK_IN_WINDOW and pick.ops == max(window, key=lambda item: item[1])[0]
    assert pick.argmax_ops == max(scored, key=lambda item: item[1])[0]


def test_pick_among_falls_back_to_the_best_under_the_budget_then_the_fastest() -> None:
    costs, _ = _problem(0)
    ms = _network_ms(costs)
    small, big = ("zero",) * 4 + ("k3_e3",), ("k5_e6",) * 5
    scored = [(big, 0.9), (small, 0.5)]
    pick = pick_among(scored, [OPS] * 5, costs, ms(big) * 0.99, ms, fill=0.9)
    assert pick.ops == small and pick.verdict in (PICK_GAP, PICK_NOTHING_BIGGER)
    nothing = pick_among(scored, [OPS] * 5, costs, 1e-4, ms)
    assert nothing.verdict == PICK_NOTHING_FITS and nothing.ops == ("zero",) * 5
    with pytest.raises(ValueError, match="no scored"):
        pick_among([], [OPS] * 5, costs, 1.0, ms)

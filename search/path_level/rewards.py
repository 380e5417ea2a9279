"""The reward of a transformed network: its accuracy, stretched, and a penalty for latency over a target.

The accuracy term is the official PathLevel-EAS code's ``tan(accuracy * pi / 2)``: it stretches
the top of the scale, where one more point of accuracy is hardest to get and worth the most.
The latency term only acts over the target, as in MnasNet's and ProxylessNAS's reward with no
pull below the target (a network that meets it may spend all of it):
- ``mul``: reward * (target / latency) ** weight (their multiplicative form, the exponent -beta);
- ``hinge``: reward - weight * (latency / target - 1) (the hinge the other strategies offer).
"""

from __future__ import annotations

import math
from typing import Literal

PERFECT = 0.999  # a perfect accuracy is read as this, so the stretched reward stays finite


def stretched(accuracy: float) -> float:
    """``tan(accuracy * pi / 2)`` of an accuracy in [0, 1]."""
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy {accuracy!r} is not a fraction in [0, 1]")
    return math.tan(min(accuracy, PERFECT) * math.pi / 2)


def penalised_reward(
    accuracy: float,
    latency_ms: float,
    target_ms: float | None,
    *,
    form: Literal["mul", "hinge"] = "mul",
    weight: float = 1.0,
    stretch: bool = True,
) -> float:
    """The reward of a network with `accuracy` (fraction) and `latency_ms`; no penalty without a target.

    `weight` is the exponent of ``mul`` or the slope of ``hinge``; `stretch` applies ``tan``."""
    reward = stretched(accuracy) if stretch else accuracy
    if target_ms is None:
        return reward
    if not (latency_ms > 0 and target_ms > 0):
        raise ValueError(f"latency {latency_ms!r} ms and target {target_ms!r} ms must be positive")
    if weight < 0:
        raise ValueError(f"the penalty weight must not be negative, got {weight!r}")
    if latency_ms <= target_ms:
        return reward
    if form == "mul":
        return reward * (target_ms / latency_ms) ** weight
    if form == "hinge":
        return reward - weight * (latency_ms / target_ms - 1.0)
    raise ValueError(f"unknown penalty form {form!r}; use 'mul' or 'hinge'")

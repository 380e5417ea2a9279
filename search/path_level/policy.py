"""What a path-level search asks of a policy, and the random policy the controller is compared with.

A policy proposes moves on a PathArch and learns from rewards. ``sample(arch, k)`` draws k moves
independently (a batch for one update; the official code trains on batches of 10 networks); a
chain of moves is drawn one ``sample(current, 1)`` at a time, applying each before the next.
``update(episodes, rewards)`` takes one reward per episode, an episode being the steps that made
one rewarded network. ``checkpoint()`` / ``restore(state)`` carry everything a resumed search needs to
draw and learn as an uninterrupted one would (tensors and plain values: checkpoints load weights-only).

A Step records the arch it was drawn on, so a learning policy recomputes its log-probabilities at
update time instead of keeping autograd graphs alive through the fine-tuning and measuring that
come between a draw and its reward; the draw-time figures stay for records.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .cell import PathArch
from .moves import Move, legal_moves


@dataclass(frozen=True)
class Step:
    """One drawn move: the arch it was drawn on, the move, its log-probability and the entropy of the
    distribution it came from (nats), both at draw time."""

    arch: PathArch
    move: Move
    log_prob: float
    entropy: float


class Policy(Protocol):
    """The interface the path-level search uses: draw moves, learn from rewards."""

    def sample(self, arch: PathArch, k: int) -> list[Step]:
        """`k` independent draws among ``legal_moves(arch)`` (ValueError when there are none)."""
        ...

    def update(self, episodes: Sequence[Sequence[Step]], rewards: Sequence[float]) -> None:
        """Learn from one reward per episode."""
        ...

    def checkpoint(self) -> dict[str, Any]:
        """The policy's whole state (parameters, optimiser, baseline, random generator)."""
        ...

    def restore(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`checkpoint`."""
        ...


class RandomPolicy:
    """Uniform over the legal moves of the arch at hand; learns nothing. The paper's random-search baseline,
    seeded so that a run reproduces."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)

    def sample(self, arch: PathArch, k: int) -> list[Step]:
        """`k` uniform draws (with replacement)."""
        moves = legal_moves(arch)
        if not moves:
            raise ValueError(f"no legal move on {arch}")
        log_n = math.log(len(moves))
        return [Step(arch, self.rng.choice(moves), -log_n, log_n) for _ in range(k)]

    def update(self, episodes: Sequence[Sequence[Step]], rewards: Sequence[float]) -> None:
        """Nothing to learn; the lengths are still checked, as a learning policy would."""
        if len(episodes) != len(rewards):
            raise ValueError(f"{len(episodes)} episodes but {len(rewards)} rewards")

    def checkpoint(self) -> dict[str, Any]:
        """The generator's state, as JSON (a string loads weights-only)."""
        return {"rng": json.dumps(self.rng.getstate())}

    def restore(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`checkpoint`."""
        version, internal, gauss = json.loads(state["rng"])
        self.rng.setstate((version, tuple(internal), gauss))

"""One candidate of a path-level round: a move applied to the current network, checked, perturbed, fine-tuned.

The order matters and is the paper's: the move is applied with inherited weights (``apply_move``),
the result is checked to compute what the current network computes (``max_output_change`` on one
batch, eval mode), and only then symmetry-breaking noise goes on the touched convolutions
(``transforms.perturb``), since the noise changes the function on purpose. A candidate then gets a
short fine-tune before it is scored, so a move is judged on what the inherited weights can quickly
become, not on the function it starts from (which is the current network's, by construction).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from nasc.errors import SearchError

from ..data import Split
from ..space import Network
from ..training import weight_step
from .cell import PathArch
from .moves import Move, apply_move
from .transforms import max_output_change, perturb

# Largest change of the logits a transformation may make before its noise. A lost function moves them by
# O(1); float rounding of trained logits stays orders below this (the transformations are exact to 1e-5 on
# random inputs, tests/unit/test_path_level_transforms.py).
FUNCTION_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Grown:
    """A move's result: the new arch, its network (inherited weights, perturbed) and the checked change."""

    arch: PathArch
    network: Network
    max_output_change: float


@dataclass(frozen=True)
class FineTune:
    """What a fine-tune saw: mean training loss and accuracy over its steps."""

    train_loss: float
    train_accuracy: float


def grow(arch: PathArch, net: Network, move: Move, calibration: Sequence[torch.Tensor], seed: int,
         perturb_scale: float) -> Grown:
    """Apply `move` to (a copy of) `net`; SearchError when the function was not kept. `calibration` are
    network inputs (new BatchNorms, the check uses the first); `seed` picks replicated units, a new
    layer's weights and the noise."""
    moved = apply_move(arch, net, move, calibration, seed=seed)
    change = max_output_change(net, moved.network, calibration[:1])
    if not change <= FUNCTION_TOLERANCE:
        raise SearchError(f"path-level: {move} on {arch} changed the network's outputs by {change:.3g} "
                          f"(over {FUNCTION_TOLERANCE:g}); the transformation did not keep the function")
    network = moved.network
    if perturb_scale > 0 and moved.touched:
        network = perturb(network, moved.touched, perturb_scale, seed=seed)
    return Grown(moved.arch, network, change)


def finetune(net: Network, split: Split, steps: Sequence[torch.Tensor], lr: float, weight_decay: float) -> FineTune:
    """SGD (momentum 0.9, Nesterov, constant `lr`) on the batches `steps` of `split`, in place; a fresh
    optimiser, since a grown network's new units have no momentum to inherit."""
    if not steps:
        raise ValueError("a fine-tune needs at least one batch")
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    loss_sum = correct = seen = 0.0
    for idx in steps:
        loss, right = weight_step(net, opt, split, idx)
        loss_sum, correct, seen = loss_sum + loss, correct + right, seen + len(idx)
    return FineTune(loss_sum / seen, correct / seen)

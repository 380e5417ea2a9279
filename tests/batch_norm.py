"""Batch norms with random statistics and affine terms, so a compiled network's output depends on its input
the way a trained one's does (fresh batch norms are close to identities and hide layout mistakes)."""

from __future__ import annotations

import torch


def randomise_batch_norm(module: torch.nn.Module, seed: int) -> None:
    """Give every BatchNorm2d of `module` seeded random running statistics, weight and bias."""
    gen = torch.Generator().manual_seed(seed)
    for bn in module.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            n = bn.num_features
            bn.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
            bn.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            bn.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            bn.bias.data.copy_(torch.randn(n, generator=gen) * 0.2)

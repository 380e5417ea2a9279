"""A deterministic fake LatencyPredictor for search tests: cost from multiply-accumulates.

It lives in tests/, never in the package: `nasc search` only ever uses a measured predictor.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import torch
from torch import nn

from nasc.search.path_level.blocks import build_path_block
from nasc.signature import BlockSignature

MACS_PER_MS = 1e8  # 100 MMAC per millisecond
BLOCK_OVERHEAD_MS = 0.005
NETWORK_OVERHEAD_MS = 0.01


@cache
def cell_macs(sig: BlockSignature) -> int:
    """Multiply-accumulates of a path-level cell block's convolutions at batch 1, counted on its module
    (built on the meta device: no weights, and torch's generator is left alone, so a search draws the same
    whether or not this cache already held the cell)."""
    total = 0

    def count(module: nn.Module, _args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Conv2d)
        kh, kw = module.kernel_size
        total += out.numel() * (module.in_channels // module.groups) * kh * kw

    with torch.device("meta"):
        block = build_path_block(sig).eval()
        for module in block.modules():
            if isinstance(module, nn.Conv2d):
                module.register_forward_hook(count)
        block(torch.empty(sig.input_shape()))
    return total


def block_macs(sig: BlockSignature) -> int:
    """Multiply-accumulates of one block at batch 1."""
    h, o = sig.in_size, sig.out_size
    if sig.op == "zero":
        return 0
    if sig.op == "cell":
        return cell_macs(sig)
    if sig.op == "stem":
        return o * o * sig.in_channels * sig.out_channels * sig.kernel**2
    if sig.op == "head":
        wide = sig.in_channels * sig.expand
        return h * h * sig.in_channels * wide + wide * sig.out_channels
    mid = sig.in_channels * sig.expand
    expand = h * h * sig.in_channels * mid if sig.expand != 1 else 0
    return expand + o * o * mid * sig.kernel**2 + o * o * mid * sig.out_channels


class MacsPredictor:
    """block_ms = MACs / 1e8 + 5 us (zero: 0; a path-level cell: its convolutions' MACs); network_ms =
    sum + 10 us. Counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def block_ms(self, block: BlockSignature) -> float:
        self.calls += 1
        if block.op == "zero":
            return 0.0
        return block_macs(block) / MACS_PER_MS + BLOCK_OVERHEAD_MS

    def network_ms(self, blocks: Sequence[BlockSignature]) -> float:
        return sum(self.block_ms(b) for b in blocks) + NETWORK_OVERHEAD_MS

"""A deterministic fake LatencyPredictor for search tests: cost from multiply-accumulates.

It lives in tests/, never in the package: `nasc search` only ever uses a measured predictor.
"""

from __future__ import annotations

from collections.abc import Sequence

from nasc.signature import BlockSignature

MACS_PER_MS = 1e8  # 100 MMAC per millisecond
BLOCK_OVERHEAD_MS = 0.005
NETWORK_OVERHEAD_MS = 0.01


def block_macs(sig: BlockSignature) -> int:
    """Multiply-accumulates of one block at batch 1."""
    h, o = sig.in_size, sig.out_size
    if sig.op == "zero":
        return 0
    if sig.op == "stem":
        return o * o * sig.in_channels * sig.out_channels * sig.kernel**2
    if sig.op == "head":
        wide = sig.in_channels * sig.expand
        return h * h * sig.in_channels * wide + wide * sig.out_channels
    mid = sig.in_channels * sig.expand
    expand = h * h * sig.in_channels * mid if sig.expand != 1 else 0
    return expand + o * o * mid * sig.kernel**2 + o * o * mid * sig.out_channels


class MacsPredictor:
    """block_ms = MACs / 1e8 + 5 us (zero: 0); network_ms = sum + 10 us. Counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def block_ms(self, block: BlockSignature) -> float:
        self.calls += 1
        if block.op == "zero":
            return 0.0
        return block_macs(block) / MACS_PER_MS + BLOCK_OVERHEAD_MS

    def network_ms(self, blocks: Sequence[BlockSignature]) -> float:
        return sum(self.block_ms(b) for b in blocks) + NETWORK_OVERHEAD_MS

"""The only way search/ knows about latency: a predictor handed to it from outside.

devices/ implements it from the measured latency table; tests use a deterministic fake.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from nasc.signature import BlockSignature


@runtime_checkable
class LatencyPredictor(Protocol):
    """Predicts latency on one device, in milliseconds."""

    def block_ms(self, block: BlockSignature) -> float:
        """Latency of one block alone (``zero`` blocks cost 0)."""
        ...

    def network_ms(self, blocks: Sequence[BlockSignature]) -> float:
        """Latency of a whole network made of `blocks` in order (sum plus any fitted overhead)."""
        ...

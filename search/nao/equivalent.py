"""Equivalent encodings of one architecture: NAO's data augmentation (the paper swaps a node's two branches).

In nasc's chain of layers, a skipped layer ("zero") of a residual layer is the identity. Within a run of
consecutive residual layers of one shape (same channels, resolution and candidate ops), moving the skips while
the other ops keep their order gives the same network: the same blocks in the same order, so the same function
class and the same latency. The encoder should map such encodings close together, and a decoded architecture
equivalent to one of the pool is not new.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from ..space import LayerSpec

ZERO = "zero"


def interchangeable_runs(layers: Sequence[LayerSpec]) -> list[range]:
    """Maximal runs (two or more) of consecutive residual layers with equal shapes and candidate ops that
    allow a skip."""
    runs: list[range] = []
    start = 0
    for i in range(1, len(layers) + 1):
        same = i < len(layers) and _shape(layers[i]) == _shape(layers[start]) and layers[i].residual
        if not same:
            if i - start >= 2 and layers[start].residual and ZERO in layers[start].ops:
                runs.append(range(start, i))
            start = i
    return runs


def _shape(layer: LayerSpec) -> tuple[object, ...]:
    return layer.in_channels, layer.out_channels, layer.in_size, layer.stride, layer.ops


def canonical(ops: Sequence[str], runs: Sequence[range]) -> tuple[str, ...]:
    """The equivalent encoding with every run's skips moved to its end."""
    out = list(ops)
    for run in runs:
        part = [ops[i] for i in run]
        kept = [op for op in part if op != ZERO]
        out[run.start:run.stop] = kept + [ZERO] * (len(part) - len(kept))
    return tuple(out)


def equivalents(ops: Sequence[str], runs: Sequence[range], limit: int = 8) -> list[tuple[str, ...]]:
    """Up to `limit` encodings equivalent to `ops` (itself excluded), in a fixed order."""
    options: list[list[list[str]]] = []
    for run in runs:
        part = [ops[i] for i in run]
        kept = [op for op in part if op != ZERO]
        arrangements = []
        for slots in itertools.combinations(range(len(part)), len(kept)):
            row = [ZERO] * len(part)
            for slot, op in zip(slots, kept, strict=True):
                row[slot] = op
            arrangements.append(row)
        options.append(arrangements)
    found: list[tuple[str, ...]] = []
    original = tuple(ops)
    for choice in itertools.product(*options):
        out = list(ops)
        for run, row in zip(runs, choice, strict=True):
            out[run.start:run.stop] = row
        arch = tuple(out)
        if arch != original:
            found.append(arch)
            if len(found) == limit:
                break
    return found

"""The module of one latency-table block of a path-level network (the table's block factory)."""

from __future__ import annotations

from torch import nn

from nasc.signature import BlockSignature

from ..ops import Layer, build_block
from .cell import parse_cell
from .modules import make_tree


def build_path_block(sig: BlockSignature) -> nn.Module:
    """The module of `sig` as it appears in a path-level network: a ``cell`` block is its cell behind the
    layer's shortcut; the other families are the space's own (``search.ops.build_block``)."""
    if sig.op != "cell":
        return build_block(sig)
    return Layer(make_tree(parse_cell(sig.cell), sig.in_channels, sig.out_channels, sig.stride), residual=sig.idskip)

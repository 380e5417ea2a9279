"""Torch modules of path-level cells and ``build_path(arch)``.

Every module is plain torch that exports to ONNX opset 17 and imports into TVM: Conv2d,
BatchNorm2d, ReLU / ReLU6, MaxPool2d / AvgPool2d, add, cat and split. The ops added here work out
of place; only the space's MBConv keeps its in-place ReLU6, which never touches a tensor another
branch reads (it follows a conv inside the op).

Activation placement, chosen so that an op can be initialised as an exact identity on any real
input (Net2Net's deepening assumes an idempotent activation on non-negative inputs, which does not
hold here: a layer's input is a linear projection plus a shortcut and is often negative):
- every parametric op ends in a BatchNorm with no activation after it (a linear output, like the
  MBConv projection), so a BN set to ``(x - mean) / sqrt(var + eps) * sqrt(var + eps) + mean`` is
  the identity and ``conv1`` (1x1 conv, BN) starts as one with the identity matrix;
- ``sepK_mM`` puts a ReLU, not a ReLU6, between its two BN-ended halves. With an even multiplier
  M, depthwise units come in pairs fed by +1 and -1 at the centre tap and the 1x1 conv adds them
  with +1 and -1: ``relu(x) - relu(-x) == x`` exactly for every real x. ReLU6 would clip at 6, which
  is why the space's MBConv (ReLU6) is never used as an identity and a deepened layer instead gets
  a residual branch whose last BN is zero;
- pooling, identity and the merges are linear or channel-wise, so replication and splitting of
  channels are exact for them.

The module tree mirrors the cell: an edge with nothing after it is its op module itself (so a
single-edge MBConv cell has exactly the state-dict keys of ``search.space.build``), an edge
followed by a tree is a Chain (``op``, ``then``), a node is a Merge (``branches.<i>``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..ops import MBConv, conv_bn
from ..space import Layer, Network, build_head, build_stem
from .cell import Edge, EdgeOp, PathArch, Tree, branch_channels, edge_op, layer_sites


class SepConv(nn.Module):
    """KxK depthwise (multiplier M) + BN, ReLU, 1x1 conv + BN; linear output (no activation at the end)."""

    def __init__(self, cin: int, cout: int, kernel: int, multiplier: int, stride: int) -> None:
        super().__init__()
        hidden = cin * multiplier
        self.depthwise = nn.Sequential(
            nn.Conv2d(cin, hidden, kernel, stride, padding=kernel // 2, groups=cin, bias=False),
            nn.BatchNorm2d(hidden),
        )
        self.act = nn.ReLU()
        self.pointwise = nn.Sequential(nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.act(self.depthwise(x)))


class Chain(nn.Module):
    """An edge's op followed by the tree it feeds."""

    def __init__(self, op: nn.Module, then: nn.Module) -> None:
        super().__init__()
        self.op = op
        self.then = then

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.then(self.op(x))


class Merge(nn.Module):
    """A node: the input replicated or split (``splits``, channel sizes) across branches, summed or concatenated."""

    def __init__(self, branches: list[nn.Module], merge: str, splits: list[int] | None) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.merge = merge
        self.splits = splits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = torch.split(x, self.splits, dim=1) if self.splits is not None else [x] * len(self.branches)
        outputs = [branch(part) for branch, part in zip(self.branches, inputs, strict=True)]
        if self.merge == "concat":
            return torch.cat(outputs, dim=1)
        total = outputs[0]
        for out in outputs[1:]:
            total = total + out
        return total


def make_edge(op: EdgeOp | str, cin: int, cout: int, stride: int) -> nn.Module:
    """The module of one op mapping `cin` -> `cout` with `stride` (ValueError when it cannot)."""
    op = edge_op(op) if isinstance(op, str) else op
    op.check(cin, cout, stride)
    if op.kind == "identity":
        return nn.Identity()
    if op.kind == "max":
        return nn.MaxPool2d(3, stride, padding=1)
    if op.kind == "avg":
        return nn.AvgPool2d(3, stride, padding=1, count_include_pad=False)
    if op.kind == "conv1":
        return conv_bn(cin, cout, 1, stride, act=False)
    if op.kind == "sep":
        return SepConv(cin, cout, op.kernel, op.width, stride)
    return MBConv(cin, cout, op.kernel, op.width, stride)


def make_tree(tree: Tree, cin: int, cout: int, stride: int) -> nn.Module:
    """The module of a (validated) tree mapping `cin` -> `cout`, the stride on each path's first edge."""
    if isinstance(tree, Edge):
        op = make_edge(tree.op, cin, cout, stride)
        return op if tree.then is None else Chain(op, make_tree(tree.then, cout, cout, 1))
    shapes = branch_channels(tree, cin, cout)
    branches = [make_tree(b, bin_, bout, stride) for b, (bin_, bout) in zip(tree.branches, shapes, strict=True)]
    splits = [bin_ for bin_, _ in shapes] if tree.alloc == "split" else None
    return Merge(branches, tree.merge, splits)


def build_path(arch: PathArch) -> Network:
    """The trainable network of `arch` (weights from torch's current RNG): the space's stem and head,
    one Layer per cell with the space's shortcut; a ``zero`` cell skips its layer as in ``build``."""
    layers: list[nn.Module] = []
    for layer, cell in zip(arch.space.layers(), arch.cells, strict=True):
        layer_sites(layer, cell)
        skipped = isinstance(cell, Edge) and cell.op == "zero"
        body = None if skipped else make_tree(cell, layer.in_channels, layer.out_channels, layer.stride)
        layers.append(Layer(body, residual=layer.residual))
    return Network(build_stem(arch.space), layers, build_head(arch.space))


@dataclass(frozen=True)
class EdgeModules:
    """Where one edge lives, relative to its cell module: the subtree it heads and its op ("" is the cell)."""

    subtree: str
    op: str


def join(*names: str) -> str:
    """Dotted module name of the non-empty parts."""
    return ".".join(name for name in names if name)


def edge_modules(tree: Tree) -> list[EdgeModules]:
    """Module names of every edge of `tree`, in the edge-index (pre-order) order."""
    found: list[EdgeModules] = []

    def visit(node: Tree, name: str) -> None:
        if isinstance(node, Edge):
            if node.then is None:
                found.append(EdgeModules(name, name))
            else:
                found.append(EdgeModules(name, join(name, "op")))
                visit(node.then, join(name, "then"))
            return
        for i, branch in enumerate(node.branches):
            visit(branch, join(name, "branches", str(i)))

    visit(tree, "")
    return found


def cell_module_name(layer: int) -> str:
    """The name of layer `layer`'s cell module inside a Network."""
    return f"layers.{layer}.op"

"""Moves: one function-preserving transformation of a PathArch, as data, with its legality decided up front.

A policy chooses among moves, so the set of moves it may choose from must be exactly the set the
transformations accept: ``legal_moves`` builds each candidate's resulting PathArch (pure data, no
network) and keeps the moves whose result validates, after each transformation's own preconditions.
``apply_move`` then dispatches to transforms.py; ``result_arch`` is the arch it will produce, known
before any weights are touched (so latency can be looked up before a move is paid for).

Choices a move offers, kept small because each is a decision a controller must learn:
- ``branch``: an edge with nothing after it becomes an ``add`` (parametric ops: copies scaled by
  1/n) or ``cat`` (slices of the output; channel-wise pools become ``cat_split``) node of
  BRANCH_COUNTS copies. Identity edges are left to ``insert_node``, which is the same rewrite.
- ``insert_node``: an identity edge with nothing after it becomes ``cat_split`` of identities.
- ``replace_identity`` / ``deepen_edge``: IDENTITY_OPS, the ops that can start as an exact identity
  (the paper's 1x1 conv and 3x3/5x5/7x7 depthwise-separable, with multiplier 2: see transforms.py).
- ``widen``: the hidden width times each of WIDEN_FACTORS (rounded up), within the grammar's 9.
- ``deepen_layer``: a new residual layer after a layer, with one of the MBConvs of the arch's own
  [search.space] ops (LAYER_OPS, the default MBConvs, is the controller's vocabulary): the new
  layer has the shapes of its stage's other layers, so the latency table already holds its block.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch

from ..settings import DEFAULT_OPS
from ..space import Network, SearchSpace
from . import transforms as T
from .cell import Edge, EdgeSite, Node, PathArch, edge_op, replace_edge

MoveKind = Literal["widen", "deepen_layer", "deepen_edge", "branch", "insert_node", "replace_identity"]
Merge = Literal["add", "concat"]
MOVE_KINDS: tuple[MoveKind, ...] = ("widen", "deepen_layer", "deepen_edge", "branch", "insert_node",
                                    "replace_identity")
EDGE_KINDS: tuple[MoveKind, ...] = tuple(kind for kind in MOVE_KINDS if kind != "deepen_layer")
MERGES: tuple[Merge, ...] = ("add", "concat")
BRANCH_COUNTS = (2, 3)
IDENTITY_OPS = ("conv1", "sep3_m2", "sep5_m2", "sep7_m2")
LAYER_OPS = tuple(op for op in DEFAULT_OPS if op != "zero")
WIDEN_FACTORS = (1.5, 2.0)
MAX_WIDTH = 9  # the grammar's largest multiplier / expansion (one digit)
_FIELDS: dict[MoveKind, frozenset[str]] = {
    "widen": frozenset({"edge", "width"}),
    "deepen_layer": frozenset({"op"}),
    "deepen_edge": frozenset({"edge", "op"}),
    "branch": frozenset({"edge", "merge", "count"}),
    "insert_node": frozenset({"edge", "count"}),
    "replace_identity": frozenset({"edge", "op"}),
}
_OPTIONAL = ("edge", "merge", "count", "op", "width")


@dataclass(frozen=True)
class Move:
    """One transformation: its kind, where (layer; edge index in the layer's cell string, pre-order),
    and the arguments its kind takes (the others stay None). ``deepen_layer`` puts the new layer
    after `layer` and has no edge."""

    kind: MoveKind
    layer: int
    edge: int | None = None
    merge: Merge | None = None
    count: int | None = None
    op: str | None = None
    width: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in _FIELDS:
            raise ValueError(f"unknown move kind {self.kind!r}; known: {', '.join(MOVE_KINDS)}")
        given = {name for name in _OPTIONAL if getattr(self, name) is not None}
        if given != _FIELDS[self.kind]:
            raise ValueError(f"a {self.kind} move takes {sorted(_FIELDS[self.kind])}, got {sorted(given)}")
        if self.merge is not None and self.merge not in MERGES:
            raise ValueError(f"unknown merge {self.merge!r}; use 'add' or 'concat'")

    def __str__(self) -> str:
        where = f"layer {self.layer} edge {self.edge}"
        if self.kind == "deepen_layer":
            return f"after layer {self.layer}: deepen_layer {self.op}"
        if self.kind == "widen":
            return f"{where}: widen to {self.width}"
        if self.kind == "branch":
            return f"{where}: branch {self.merge} x{self.count}"
        if self.kind == "insert_node":
            return f"{where}: insert_node cat_split x{self.count}"
        if self.kind == "replace_identity":
            return f"{where}: replace_identity by {self.op}"
        return f"{where}: deepen_edge with {self.op} after"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the set fields."""
        data: dict[str, Any] = {"kind": self.kind, "layer": self.layer}
        data.update({name: getattr(self, name) for name in _OPTIONAL if getattr(self, name) is not None})
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Move:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


def widen_widths(width: int) -> list[int]:
    """The distinct widths that WIDEN_FACTORS make of `width`, in factor order, within MAX_WIDTH."""
    found: list[int] = []
    for factor in WIDEN_FACTORS:
        new = math.ceil(width * factor)
        if width < new <= MAX_WIDTH and new not in found:
            found.append(new)
    return found


def result_arch(arch: PathArch, move: Move) -> PathArch:
    """The PathArch `move` produces, from the data alone; ValueError where the move cannot apply.

    Mirrors the preconditions of transforms.py so that legality is known without building networks;
    the tests check it against ``apply_move`` for every legal move of random chains."""
    if move.kind == "deepen_layer":
        return _deepened(arch, move)
    site = _site(arch, move)
    op = site.op
    if move.kind == "widen":
        assert move.width is not None
        if op.kind not in ("sep", "mbconv") or (op.kind == "mbconv" and op.width == 1):
            raise ValueError(f"{move}: only sep and MBConv (expansion > 1) edges widen")
        if move.width not in widen_widths(op.width):
            raise ValueError(f"{move}: the widths on offer for {op.name} are {widen_widths(op.width)}")
        new: Edge | Node = Edge(op.widened(move.width).name, site.edge.then)
    elif move.kind in ("replace_identity", "deepen_edge"):
        if move.op not in IDENTITY_OPS:
            raise ValueError(f"{move}: use one of {', '.join(IDENTITY_OPS)}")
        if move.kind == "replace_identity":
            if op.kind != "identity":
                raise ValueError(f"{move}: replace_identity works on identity edges")
            new = Edge(move.op, site.edge.then)
        else:
            new = Edge(site.edge.op, Edge(move.op, site.edge.then))
    else:
        assert move.count is not None
        if site.edge.then is not None:
            raise ValueError(f"{move}: only an edge with nothing after it can become a node")
        if move.count not in BRANCH_COUNTS:
            raise ValueError(f"{move}: use a branch count in {BRANCH_COUNTS}")
        copies = (Edge(site.edge.op),) * move.count
        if move.kind == "insert_node":
            if op.kind != "identity":
                raise ValueError(f"{move}: insert_node works on identity edges")
            new = Node("concat", copies, "split")
        elif op.kind == "identity":
            raise ValueError(f"{move}: an identity edge branches by insert_node")
        elif move.merge == "add":
            if not op.parametric:
                raise ValueError(f"{move}: copies of a parameter-free op cannot be scaled to keep the sum")
            new = Node("add", copies)
        else:
            new = Node("concat", copies, "split" if op.channelwise else "replicate")
    return arch.with_cell(move.layer, replace_edge(arch.cells[move.layer], site.index, new))


def legal_moves(arch: PathArch) -> list[Move]:
    """Every move the transformations accept on `arch`, in a fixed order (layer, edge, kind, arguments)."""
    found: list[Move] = []
    for layer in range(len(arch.cells)):
        for site in arch.sites(layer):
            found.extend(move for move in _edge_candidates(layer, site) if _valid(arch, move))
        found.extend(Move("deepen_layer", layer, op=op) for op in space_layer_ops(arch))
    return found


def space_layer_ops(arch: PathArch) -> tuple[str, ...]:
    """The MBConv ops of `arch`'s [search.space] that a new layer may take."""
    return tuple(op for op in LAYER_OPS if op in arch.space.settings.ops)


def apply_move(
    arch: PathArch, net: Network, move: Move, data_batches: Sequence[torch.Tensor], seed: int = 0
) -> T.Transformed:
    """Apply `move` through transforms.py: the new arch, its network (the input is left alone) and the
    touched modules (for ``transforms.perturb``). `data_batches` are network inputs that set new
    BatchNorms; `seed` picks the units a widen replicates and a new layer's weights."""
    if move.kind == "deepen_layer":
        assert move.op is not None
        return T.deepen_layer(arch, net, move.layer, move.op, data_batches, seed=seed)
    edge = move.edge
    assert edge is not None
    if move.kind == "widen":
        assert move.width is not None
        return T.widen(arch, net, move.layer, edge, move.width, seed=seed)
    if move.kind == "deepen_edge":
        assert move.op is not None
        return T.deepen_edge(arch, net, move.layer, edge, move.op, data_batches)
    if move.kind == "replace_identity":
        assert move.op is not None
        return T.replace_identity(arch, net, move.layer, edge, move.op, data_batches)
    assert move.count is not None
    if move.kind == "insert_node":
        return T.insert_node(arch, net, move.layer, edge, move.count)
    if move.merge == "add":
        return T.branch_add(arch, net, move.layer, edge, move.count)
    return T.branch_concat(arch, net, move.layer, edge, move.count)


def _edge_candidates(layer: int, site: EdgeSite) -> list[Move]:
    """Moves at one edge that pass the op-level preconditions (the data check follows)."""
    op, index, leaf = site.op, site.index, site.edge.then is None
    moves: list[Move] = []
    if op.kind == "sep" or (op.kind == "mbconv" and op.width > 1):
        moves.extend(Move("widen", layer, index, width=width) for width in widen_widths(op.width))
    moves.extend(Move("deepen_edge", layer, index, op=new) for new in IDENTITY_OPS)
    if leaf and op.kind != "identity":
        merges = MERGES if op.parametric else ("concat",)
        moves.extend(Move("branch", layer, index, merge=merge, count=count)
                     for merge in merges for count in BRANCH_COUNTS)
    if op.kind == "identity":
        if leaf:
            moves.extend(Move("insert_node", layer, index, count=count) for count in BRANCH_COUNTS)
        moves.extend(Move("replace_identity", layer, index, op=new) for new in IDENTITY_OPS)
    return moves


def _valid(arch: PathArch, move: Move) -> bool:
    try:
        result_arch(arch, move)
    except ValueError:
        return False
    return True


def _site(arch: PathArch, move: Move) -> EdgeSite:
    if not 0 <= move.layer < len(arch.cells):
        raise ValueError(f"{move}: the arch has layers 0..{len(arch.cells) - 1}")
    found = arch.sites(move.layer)
    if move.edge is None or not 0 <= move.edge < len(found):
        raise ValueError(f"{move}: the cell {arch.cells[move.layer]} has {len(found)} edges")
    return found[move.edge]


def _deepened(arch: PathArch, move: Move) -> PathArch:
    """The arch with a new layer (cell ``move.op``) after ``move.layer``, in that layer's stage."""
    if not 0 <= move.layer < len(arch.cells):
        raise ValueError(f"{move}: the arch has layers 0..{len(arch.cells) - 1}")
    assert move.op is not None
    op = edge_op(move.op)
    if move.op not in space_layer_ops(arch) or not op.parametric:
        raise ValueError(f"{move}: use one of the space's ops {', '.join(space_layer_ops(arch))}")
    settings = arch.space.settings
    stage, first = 0, 0
    while first + settings.stages[stage].depth <= move.layer:
        first += settings.stages[stage].depth
        stage += 1
    stages = list(settings.stages)
    stages[stage] = replace(stages[stage], depth=stages[stage].depth + 1)
    space = SearchSpace(replace(settings, stages=tuple(stages)), arch.space.num_classes)
    cells = (*arch.cells[: move.layer + 1], Edge(op.name), *arch.cells[move.layer + 1 :])
    return PathArch(space, cells)

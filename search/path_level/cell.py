"""The path-level architecture as data: tree-structured cells (Cai et al., ICML 2018) and PathArch.

A cell takes the place of the one op of a searchable layer. It is a tree of edges and nodes; its
compact string (no spaces) follows this grammar::

    tree  := edge | node
    edge  := OP [ '>' tree ]                   an op, optionally followed by the tree it feeds
    node  := MERGE '(' tree ( ',' tree )+ ')'  2 to MAX_BRANCHES branches
    MERGE := 'add' | 'cat' | 'cat_split'
    OP    := 'identity' | 'max3' | 'avg3' | 'conv1' | 'sepK' | 'sepK_mM' | 'kK_eE' | 'zero'

``add`` gives every branch the whole input and sums their outputs; ``cat`` gives every branch the
whole input and concatenates their outputs; ``cat_split`` splits the input channels across its
branches and concatenates their outputs. ``>`` binds to the right (``a>b>c`` is ``a`` feeding
``b>c``); only an edge may be followed by ``>``. Examples: ``k3_e6`` (a plain MBConv layer),
``add(sep3,sep3)``, ``cat(conv1,add(identity,sep5))``, ``sep3>add(identity,avg3)``.

Ops: ``identity``; ``max3`` / ``avg3`` (3x3 pooling); ``conv1`` (1x1 conv + BN); ``sepK`` (KxK
depthwise with channel multiplier M, written ``sepK_mM`` when M > 1, BN, ReLU, 1x1 conv, BN);
``kK_eE`` (the space's MBConv, so a plain ArchSpec is a PathArch of single-edge cells); ``zero``
(only as a whole cell of a residual layer: the layer is skipped, as in ArchSpec).

Channels and stride, so that every cell has one meaning at its layer (cin -> cout, stride s):
- an edge's op maps cin -> cout with stride s; the tree after ``>`` maps cout -> cout with stride 1;
- a node's branches get cin each (``add``, ``cat``) or an even split of cin (``cat_split``); they
  return cout each (``add``) or an even split of cout (``cat``, ``cat_split``); an even split of c
  into n gives the first c % n parts one channel more. Each branch inherits the node's stride;
- so the stride sits on the first edge of every path from the cell input.
``identity`` needs equal channels and stride 1, pooling equal channels; anything else raises a
ValueError naming the edge. The edge index used across this package is the op's position in the
string, counting from 0 (pre-order).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Literal

from nasc.signature import BlockSignature

from ..settings import OP_PATTERN
from ..space import ArchSpec, LayerSpec, SearchSpace

MAX_DEPTH = 4  # nodes and edges on the longest root-to-leaf path (the tree's height)
MAX_BRANCHES = 4
PATH_ARCH_FORMAT = "path-level/1"  # ArchSpec's format is the integer 1: the two never read each other's files

EdgeKind = Literal["identity", "max", "avg", "conv1", "sep", "mbconv", "zero"]
SEP_PATTERN = re.compile(r"^sep(?P<kernel>[357])(?:_m(?P<mult>[1-9]))?$")
MERGE_WORDS = {"add": ("add", "replicate"), "cat": ("concat", "replicate"), "cat_split": ("concat", "split")}
_FIXED_OPS: dict[str, tuple[EdgeKind, int]] = {
    "identity": ("identity", 1), "max3": ("max", 3), "avg3": ("avg", 3), "conv1": ("conv1", 1), "zero": ("zero", 1),
}
KNOWN_OPS = "identity, max3, avg3, conv1, sep3/sep5/sep7 (multiplier: sep3_m2), kK_eE (MBConv), zero"


@dataclass(frozen=True)
class EdgeOp:
    """A parsed op name: its kind, kernel and width (sep: depthwise multiplier; mbconv: expansion)."""

    kind: EdgeKind
    kernel: int = 1
    width: int = 1

    @property
    def name(self) -> str:
        """The canonical op name (``sep3``, ``sep5_m2``, ``k3_e6``, ``max3``, ...)."""
        if self.kind == "sep":
            return f"sep{self.kernel}" + (f"_m{self.width}" if self.width > 1 else "")
        if self.kind == "mbconv":
            return f"k{self.kernel}_e{self.width}"
        return {"max": "max3", "avg": "avg3"}.get(self.kind, self.kind)

    @property
    def channelwise(self) -> bool:
        """Output channel c depends on input channel c only, so the op can be split across channels."""
        return self.kind in ("identity", "max", "avg")

    @property
    def parametric(self) -> bool:
        """The op has weights and ends in a BatchNorm (its output can be scaled and sliced)."""
        return self.kind in ("conv1", "sep", "mbconv")

    def widened(self, width: int) -> EdgeOp:
        """The same op with `width` hidden units per input channel."""
        return replace(self, width=width)

    def check(self, cin: int, cout: int, stride: int) -> None:
        """Raise ValueError when the op cannot map `cin` -> `cout` channels with `stride`."""
        if self.kind == "zero":
            raise ValueError("zero is only a whole cell (the layer skipped), never part of a tree")
        if self.kind == "identity" and (cin != cout or stride != 1):
            raise ValueError(f"identity needs stride 1 and equal channels, got {cin}->{cout} stride {stride}")
        if self.channelwise and cin != cout:
            raise ValueError(f"{self.name} keeps its channels, got {cin}->{cout}")


def edge_op(name: str) -> EdgeOp:
    """Parse an op name; ValueError lists the known ops."""
    if name in _FIXED_OPS:
        kind, kernel = _FIXED_OPS[name]
        return EdgeOp(kind, kernel)
    if match := SEP_PATTERN.match(name):
        return EdgeOp("sep", int(match["kernel"]), int(match["mult"] or 1))
    if match := OP_PATTERN.match(name):
        return EdgeOp("mbconv", int(match["kernel"]), int(match["expand"]))
    raise ValueError(f"unknown op {name!r}; known: {KNOWN_OPS}")


@dataclass(frozen=True)
class Edge:
    """An op, optionally followed by the tree it feeds (``op>then``)."""

    op: str
    then: Edge | Node | None = None

    def __post_init__(self) -> None:
        parsed = edge_op(self.op)
        if parsed.name != self.op:
            raise ValueError(f"write op {self.op!r} as {parsed.name!r}")
        if self.then is not None and (parsed.kind == "zero" or _has_zero(self.then)):
            raise ValueError("zero is only a whole cell (the layer skipped), never part of a tree")
        _check_depth(self)

    @property
    def parsed(self) -> EdgeOp:
        """The op as an EdgeOp."""
        return edge_op(self.op)

    def __str__(self) -> str:
        return self.op if self.then is None else f"{self.op}>{self.then}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``{"op": ..., "then": ...}`` (no ``then`` when nothing follows)."""
        return {"op": self.op} if self.then is None else {"op": self.op, "then": self.then.to_dict()}


@dataclass(frozen=True)
class Node:
    """Branches merged by ``add`` or ``concat``; the input is replicated or (concat only) split across them."""

    merge: Literal["add", "concat"]
    branches: tuple[Edge | Node, ...]
    alloc: Literal["replicate", "split"] = "replicate"

    def __post_init__(self) -> None:
        object.__setattr__(self, "branches", tuple(self.branches))  # a list would make the node unhashable
        if self.merge not in ("add", "concat"):
            raise ValueError(f"unknown merge {self.merge!r}; use 'add' or 'concat'")
        if self.alloc not in ("replicate", "split"):
            raise ValueError(f"unknown allocation {self.alloc!r}; use 'replicate' or 'split'")
        if self.alloc == "split" and self.merge != "concat":
            raise ValueError("a split input needs a concat merge (cat_split)")
        if not 2 <= len(self.branches) <= MAX_BRANCHES:
            raise ValueError(f"a node needs 2 to {MAX_BRANCHES} branches, got {len(self.branches)}")
        if any(_has_zero(branch) for branch in self.branches):
            raise ValueError("zero is only a whole cell (the layer skipped), never part of a tree")
        _check_depth(self)

    @property
    def word(self) -> str:
        """``add``, ``cat`` or ``cat_split``."""
        return "add" if self.merge == "add" else ("cat_split" if self.alloc == "split" else "cat")

    def __str__(self) -> str:
        return f"{self.word}({','.join(str(branch) for branch in self.branches)})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: merge, alloc and the branches' dicts."""
        return {"merge": self.merge, "alloc": self.alloc, "branches": [branch.to_dict() for branch in self.branches]}


Tree = Edge | Node


def _has_zero(tree: Tree) -> bool:
    return any(edge.op == "zero" for edge in edges(tree))


def depth(tree: Tree) -> int:
    """The height of `tree`: nodes and edges on its longest root-to-leaf path. Bounding it bounds both
    nested merges and ops in sequence (latency), and gives a tree controller a fixed number of levels."""
    if isinstance(tree, Edge):
        return 1 + (depth(tree.then) if tree.then is not None else 0)
    return 1 + max(depth(branch) for branch in tree.branches)


def _check_depth(tree: Tree) -> None:
    if (found := depth(tree)) > MAX_DEPTH:
        raise ValueError(f"depth {found} exceeds {MAX_DEPTH} (nodes and edges on one root-to-leaf path)")


def edges(tree: Tree) -> list[Edge]:
    """Every edge in pre-order: the order of the ops in the cell string (the edge index)."""
    if isinstance(tree, Edge):
        return [tree] + (edges(tree.then) if tree.then is not None else [])
    return [edge for branch in tree.branches for edge in edges(branch)]


def replace_edge(tree: Tree, index: int, new: Tree) -> Tree:
    """`tree` with edge `index` (with whatever follows it) replaced by `new`."""
    count = len(edges(tree))
    if not 0 <= index < count:
        raise ValueError(f"edge {index} does not exist; the cell {tree} has edges 0..{count - 1}")

    def visit(node: Tree, start: int) -> tuple[Tree, int]:
        if isinstance(node, Edge):
            if start == index:
                return new, start + len(edges(node))
            if node.then is None:
                return node, start + 1
            then, after = visit(node.then, start + 1)
            return Edge(node.op, then), after
        branches: list[Tree] = []
        for branch in node.branches:
            changed, start = visit(branch, start)
            branches.append(changed)
        return Node(node.merge, tuple(branches), node.alloc), start

    return visit(tree, 0)[0]


def even_split(channels: int, parts: int) -> list[int]:
    """`channels` in `parts` near-equal parts, the first ``channels % parts`` one larger."""
    if channels < parts:
        raise ValueError(f"cannot split {channels} channels into {parts} branches")
    base, extra = divmod(channels, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def branch_channels(node: Node, cin: int, cout: int) -> list[tuple[int, int]]:
    """(input, output) channels of each branch of `node` when it maps `cin` -> `cout`."""
    n = len(node.branches)
    ins = even_split(cin, n) if node.alloc == "split" else [cin] * n
    outs = even_split(cout, n) if node.merge == "concat" else [cout] * n
    return list(zip(ins, outs, strict=True))


@dataclass(frozen=True)
class EdgeSite:
    """One edge of a cell placed at its layer: its index, the edge, its channels and stride."""

    index: int
    edge: Edge
    in_channels: int
    out_channels: int
    stride: int

    @property
    def op(self) -> EdgeOp:
        """The edge's op."""
        return self.edge.parsed


def sites(tree: Tree, cin: int, cout: int, stride: int) -> list[EdgeSite]:
    """Every edge of `tree` (pre-order) with its channels and stride; ValueError where one does not fit."""
    found: list[EdgeSite] = []

    def visit(node: Tree, cin: int, cout: int, stride: int) -> None:
        if isinstance(node, Edge):
            try:
                node.parsed.check(cin, cout, stride)
            except ValueError as err:
                raise ValueError(f"edge {len(found)} ({node.op}): {err}") from None
            found.append(EdgeSite(len(found), node, cin, cout, stride))
            if node.then is not None:
                visit(node.then, cout, cout, 1)
            return
        try:
            shapes = branch_channels(node, cin, cout)
        except ValueError as err:
            raise ValueError(f"node {node.word} at edge {len(found)}: {err}") from None
        for branch, (bin_, bout) in zip(node.branches, shapes, strict=True):
            visit(branch, bin_, bout, stride)

    visit(tree, cin, cout, stride)
    return found


def parse_cell(text: str) -> Tree:
    """The tree of a cell string; ValueError names the position (0-based) of the problem."""
    return _Parser(text).parse()


class _Parser:
    """Recursive descent over the grammar of the module docstring."""

    WORD = re.compile(r"[A-Za-z0-9_]+")

    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def fail(self, pos: int, message: str) -> ValueError:
        return ValueError(f"cell {self.text!r}, position {pos}: {message}")

    def found(self) -> str:
        return repr(self.text[self.pos]) if self.pos < len(self.text) else "the end"

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def parse(self) -> Tree:
        tree = self.tree()
        if self.pos != len(self.text):
            raise self.fail(self.pos, f"unexpected {self.found()} after a complete cell")
        return tree

    def tree(self) -> Tree:
        start = self.pos
        match = self.WORD.match(self.text, self.pos)
        if not match:
            raise self.fail(self.pos, f"expected an op or a merge (add, cat, cat_split), found {self.found()}")
        word, self.pos = match.group(), match.end()
        if self.peek() == "(":
            return self.node(word, start)
        try:
            edge_op(word)
        except ValueError as err:
            raise self.fail(start, str(err)) from None
        then = None
        if self.peek() == ">":
            self.pos += 1
            then = self.tree()
        try:
            return Edge(word, then)
        except ValueError as err:
            raise self.fail(start, str(err)) from None

    def node(self, word: str, start: int) -> Node:
        if word not in MERGE_WORDS:
            raise self.fail(start, f"unknown merge {word!r}; use add, cat or cat_split")
        self.pos += 1
        branches = [self.tree()]
        while self.peek() == ",":
            self.pos += 1
            branches.append(self.tree())
        if self.peek() != ")":
            raise self.fail(self.pos, f"expected ',' or ')', found {self.found()}")
        self.pos += 1
        if self.peek() == ">":
            raise self.fail(self.pos, "only an edge may be followed by '>', not a node")
        merge, alloc = MERGE_WORDS[word]
        try:
            return Node(merge, tuple(branches), alloc)  # type: ignore[arg-type]
        except ValueError as err:
            raise self.fail(start, str(err)) from None


def tree_from_dict(data: Any, where: str = "cell") -> Tree:
    """Inverse of ``to_dict`` of Edge and Node; errors name the key path `where`."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a table with 'op' or 'merge', got {data!r}")
    try:
        if "op" in data:
            _only_keys(data, {"op", "then"})
            then = tree_from_dict(data["then"], f"{where}.then") if "then" in data else None
            return Edge(str(data["op"]), then)
        if "merge" in data:
            _only_keys(data, {"merge", "alloc", "branches"})
            raw = data.get("branches")
            if not isinstance(raw, list):
                raise ValueError(f"'branches' must be a list, got {raw!r}")
            branches = tuple(tree_from_dict(b, f"{where}.branches[{i}]") for i, b in enumerate(raw))
            return Node(data["merge"], branches, data.get("alloc", "replicate"))
    except ValueError as err:
        message = str(err)
        raise ValueError(message if message.startswith(where) else f"{where}: {message}") from None
    raise ValueError(f"{where}: expected a table with 'op' or 'merge', got keys {sorted(data)}")


def _only_keys(data: dict[str, Any], allowed: set[str]) -> None:
    if extra := sorted(set(data) - allowed):
        raise ValueError(f"unknown keys {extra}; allowed: {sorted(allowed)}")


def layer_sites(layer: LayerSpec, tree: Tree) -> list[EdgeSite]:
    """The edges of `tree` placed at `layer`; ValueError (naming the layer) where the cell cannot fit."""
    where = f"layer {layer.index} ({layer.in_channels}->{layer.out_channels} channels, stride {layer.stride})"
    if isinstance(tree, Edge) and tree.op == "zero":
        if not layer.residual:
            raise ValueError(f"{where}: zero needs a residual layer (stride 1, equal channels)")
        return []
    try:
        return sites(tree, layer.in_channels, layer.out_channels, layer.stride)
    except ValueError as err:
        raise ValueError(f"{where}, cell {tree}: {err}") from None


def cell_signature(layer: LayerSpec, cell: Tree) -> BlockSignature:
    """The latency-table block that `cell` runs at `layer`.

    A cell that is one MBConv edge (or ``zero``) is the space's own block, sharing the table entries of
    ArchSpec networks; any other cell is a ``cell`` block keyed by its compact string, so each distinct
    cell at each position is timed on its own: the table never sums a multi-branch cell from its parts,
    since what fuses across the branches is the compiler's choice.
    """
    layer_sites(layer, cell)
    if isinstance(cell, Edge) and cell.then is None and edge_op(cell.op).kind in ("mbconv", "zero"):
        return layer.signature(cell.op)
    return BlockSignature(op="cell", in_channels=layer.in_channels, out_channels=layer.out_channels,
                          in_size=layer.in_size, stride=layer.stride, idskip=layer.residual, cell=str(cell))


@dataclass(frozen=True)
class PathArch:
    """A path-level network: `space` (stem, head, layer shapes and shortcuts) and one cell per layer."""

    space: SearchSpace
    cells: tuple[Tree, ...]

    def __post_init__(self) -> None:
        layers = self.space.layers()
        if len(self.cells) != len(layers):
            raise ValueError(f"the space has {len(layers)} searchable layers, the arch names {len(self.cells)} cells")
        for layer, cell in zip(layers, self.cells, strict=True):
            layer_sites(layer, cell)

    def sites(self, layer: int) -> list[EdgeSite]:
        """The edges of layer `layer`'s cell, placed."""
        return layer_sites(self.space.layers()[layer], self.cells[layer])

    def with_cell(self, layer: int, cell: Tree) -> PathArch:
        """The same arch with layer `layer`'s cell replaced (validated)."""
        cells = list(self.cells)
        cells[layer] = cell
        return PathArch(self.space, tuple(cells))

    def blocks(self) -> list[BlockSignature]:
        """The blocks the network runs, in order: stem, each non-zero layer's block, head (as ArchSpec.blocks)."""
        inner = [cell_signature(layer, cell) for layer, cell in zip(self.space.layers(), self.cells, strict=True)
                 if not (isinstance(cell, Edge) and cell.op == "zero")]
        return [self.space.stem_signature(), *inner, self.space.head_signature()]

    def cell_strings(self) -> list[str]:
        """Compact form per layer."""
        return [str(cell) for cell in self.cells]

    def __str__(self) -> str:
        return " ".join(self.cell_strings())

    def input_shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        """NCHW input shape."""
        return self.space.input_shape(batch)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``cells`` is authoritative, ``cell_strings`` is for people (and checked)."""
        return {
            "format": PATH_ARCH_FORMAT,
            "cell_strings": self.cell_strings(),
            "cells": [cell.to_dict() for cell in self.cells],
            "input_shape": list(self.input_shape()),
            "space": self.space.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "arch.json") -> PathArch:
        """Inverse of :meth:`to_dict`; a mismatch raises ValueError naming `source`."""
        if data.get("format") != PATH_ARCH_FORMAT:
            raise ValueError(f"{source}: unknown path-level arch format {data.get('format')!r}, "
                             f"expected {PATH_ARCH_FORMAT!r}")
        cells = tuple(tree_from_dict(cell, f"{source}: cells[{i}]") for i, cell in enumerate(data["cells"]))
        try:
            arch = cls(SearchSpace.from_dict(data["space"], source), cells)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None
        if "cell_strings" in data and list(data["cell_strings"]) != arch.cell_strings():
            raise ValueError(f"{source}: 'cell_strings' {data['cell_strings']} disagree with 'cells' "
                             f"{arch.cell_strings()}")
        return arch

    @classmethod
    def from_strings(cls, space: SearchSpace, cells: list[str] | tuple[str, ...]) -> PathArch:
        """From one cell string per layer."""
        return cls(space, tuple(parse_cell(text) for text in cells))

    @classmethod
    def from_arch(cls, arch: ArchSpec) -> PathArch:
        """The same network as `arch`: each layer's op becomes a single-edge cell."""
        return cls(arch.space, tuple(Edge(op) for op in arch.ops))

"""The meta-controller's encoder: a bidirectional tree-structured LSTM over one cell (Cai et al., ICML 2018).

The cell is read as the paper reads it, edges as LSTM transitions and nodes as Tree-LSTM merges
(Tai et al., 2015):
- bottom-up: an edge's state is an LSTM step on its op's embedding from the state of the tree it
  feeds (zeros for a leaf), so it summarises everything after it; a node's state merges its
  branches' states, child-sum for ``add`` (order-free, like the sum) and N-ary (N = MAX_BRANCHES,
  zero-padded) for ``cat`` / ``cat_split`` (their branches are ordered channel slices);
- top-down: a branch's state comes from its parent's top-down state and its siblings' bottom-up
  states (its own zeroed, as in the official code), then an LSTM step on each edge; so an edge's
  top-down state summarises everything before and beside it.

An edge is described by both halves, bottom-up and top-down hidden state side by side. The op
embedding is the sum of a kind, a kernel and a width embedding, so widened or unseen widths
(``sep5_m3``, ``k7_e4``) need no vocabulary of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from .cell import MAX_BRANCHES, Edge, Node, Tree, edge_op

OP_KINDS = ("identity", "max", "avg", "conv1", "sep", "mbconv", "zero")
KERNELS = (1, 3, 5, 7)
MAX_OP_WIDTH = 9
MERGE_WORDS = ("add", "cat", "cat_split")


class State(NamedTuple):
    """An LSTM state, each [rows, hidden]."""

    h: torch.Tensor
    c: torch.Tensor


@dataclass(frozen=True)
class CellEncoding:
    """A cell encoded: ``edges`` [edges, 2 * hidden] (bottom-up then top-down, edge-index order) and
    ``cell`` [2 * hidden] (the root's bottom-up state and the edges' mean top-down state)."""

    edges: torch.Tensor
    cell: torch.Tensor


class _Up(NamedTuple):
    """Bottom-up state of a subtree, with its children's (the tree an edge feeds; a node's branches)."""

    state: State
    kids: tuple[_Up, ...]


class ChildSumUp(nn.Module):
    """Child-sum Tree-LSTM step: gates from the node's embedding and the sum of its children's h."""

    def __init__(self, embed: int, hidden: int) -> None:
        super().__init__()
        self.iou_x, self.f_x = nn.Linear(embed, 3 * hidden), nn.Linear(embed, hidden)
        self.iou_h, self.f_h = nn.Linear(hidden, 3 * hidden, bias=False), nn.Linear(hidden, hidden, bias=False)

    def forward(self, x: torch.Tensor, kids: State) -> State:
        iou = self.iou_x(x) + self.iou_h(kids.h.sum(0, keepdim=True))
        forget = torch.sigmoid(self.f_x(x) + self.f_h(kids.h))  # one forget gate per child
        return _cell(iou, (forget * kids.c).sum(0, keepdim=True))


class NaryUp(nn.Module):
    """N-ary Tree-LSTM step: gates from the node's embedding and its children's h in order (zero-padded)."""

    def __init__(self, embed: int, hidden: int, arity: int) -> None:
        super().__init__()
        self.arity, self.hidden = arity, hidden
        self.iou_x, self.f_x = nn.Linear(embed, 3 * hidden), nn.Linear(embed, hidden)
        self.iou_h = nn.Linear(arity * hidden, 3 * hidden, bias=False)
        self.f_h = nn.Linear(arity * hidden, arity * hidden, bias=False)  # forget gate k from all children

    def forward(self, x: torch.Tensor, kids: State) -> State:
        n = kids.h.shape[0]
        flat = _padded(kids.h, self.arity).reshape(1, -1)
        iou = self.iou_x(x) + self.iou_h(flat)
        forget = torch.sigmoid(self.f_x(x) + self.f_h(flat).view(self.arity, self.hidden)[:n])
        return _cell(iou, (forget * kids.c).sum(0, keepdim=True))


class ChildSumDown(nn.Module):
    """Top-down child-sum step for every branch at once: parent state plus the sum of the siblings' h."""

    def __init__(self, embed: int, hidden: int) -> None:
        super().__init__()
        self.iou_x, self.f_x = nn.Linear(embed, 3 * hidden), nn.Linear(embed, hidden)
        self.iou_kids = nn.Linear(hidden, 3 * hidden, bias=False)
        self.iou_parent = nn.Linear(hidden, 3 * hidden, bias=False)
        self.f_kid = nn.Linear(2 * hidden, hidden, bias=False)  # from [parent h, sibling h]
        self.f_parent = nn.Linear(2 * hidden, hidden, bias=False)  # from [parent h, siblings' sum]

    def forward(self, x: torch.Tensor, parent: State, kids: State) -> State:
        n = kids.h.shape[0]
        siblings = kids.h.sum(0, keepdim=True) - kids.h  # row j: every child but j
        parent_h = parent.h.expand(n, -1)
        iou = self.iou_x(x) + self.iou_kids(siblings) + self.iou_parent(parent_h)
        kept = torch.sigmoid(self.f_x(x) + self.f_kid(torch.cat([parent_h, kids.h], 1))) * kids.c
        from_siblings = kept.sum(0, keepdim=True) - kept
        from_parent = torch.sigmoid(self.f_x(x) + self.f_parent(torch.cat([parent_h, siblings], 1))) * parent.c
        return _cell(iou, from_siblings + from_parent)


class NaryDown(nn.Module):
    """Top-down N-ary step for every branch at once: parent state plus the ordered siblings' h (own zeroed)."""

    def __init__(self, embed: int, hidden: int, arity: int) -> None:
        super().__init__()
        self.arity, self.hidden = arity, hidden
        self.iou_x, self.f_x = nn.Linear(embed, 3 * hidden), nn.Linear(embed, hidden)
        self.iou_kids = nn.Linear(arity * hidden, 3 * hidden, bias=False)
        self.iou_parent = nn.Linear(hidden, 3 * hidden, bias=False)
        self.f_kids = nn.Linear((arity + 1) * hidden, arity * hidden, bias=False)
        self.f_parent = nn.Linear((arity + 1) * hidden, hidden, bias=False)

    def forward(self, x: torch.Tensor, parent: State, kids: State) -> State:
        n = kids.h.shape[0]
        others = 1.0 - torch.eye(n)  # row j zeroes child j
        padded = _padded(kids.h, self.arity)  # [arity, hidden]
        mask = torch.cat([others, torch.zeros(n, self.arity - n)], 1)
        siblings = (mask[:, :, None] * padded[None]).reshape(n, -1)  # [n, arity * hidden]
        joint = torch.cat([parent.h.expand(n, -1), siblings], 1)
        iou = self.iou_x(x) + self.iou_kids(siblings) + self.iou_parent(parent.h)
        forget = torch.sigmoid(self.f_x(x)[:, None] + self.f_kids(joint).view(n, self.arity, self.hidden)[:, :n])
        from_siblings = (others[:, :, None] * forget * kids.c[None]).sum(1)
        from_parent = torch.sigmoid(self.f_x(x) + self.f_parent(joint)) * parent.c
        return _cell(iou, from_siblings + from_parent)


class TreeEncoder(nn.Module):
    """Bidirectional Tree-LSTM over a cell (see the module docstring); ``forward(tree) -> CellEncoding``."""

    def __init__(self, embed: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.kind = nn.Embedding(len(OP_KINDS), embed)
        self.kernel = nn.Embedding(len(KERNELS), embed)
        self.width = nn.Embedding(MAX_OP_WIDTH, embed)
        self.merge = nn.Embedding(len(MERGE_WORDS), embed)
        self.up_edge, self.down_edge = nn.LSTMCell(embed, hidden), nn.LSTMCell(embed, hidden)
        self.up_add, self.up_cat = ChildSumUp(embed, hidden), NaryUp(embed, hidden, MAX_BRANCHES)
        self.down_add, self.down_cat = ChildSumDown(embed, hidden), NaryDown(embed, hidden, MAX_BRANCHES)

    def reset_parameters(self) -> None:
        """The official initialisation: embeddings uniform in +-0.1, recurrent weights orthogonal, biases 0."""
        for name, param in self.named_parameters():
            if name.split(".")[0] in ("kind", "kernel", "width", "merge"):
                nn.init.uniform_(param, -0.1, 0.1)
            elif param.ndim == 2:
                nn.init.orthogonal_(param)
            else:
                nn.init.zeros_(param)

    def forward(self, tree: Tree) -> CellEncoding:
        up_h: list[torch.Tensor] = []
        root = self._up(tree, up_h)
        down_h: list[torch.Tensor] = []
        self._down(tree, root, self._zeros(), down_h)
        down = torch.cat(down_h)
        edges = torch.cat([torch.cat(up_h), down], 1)
        return CellEncoding(edges, torch.cat([root.state.h[0], down.mean(0)]))

    def op_embedding(self, name: str) -> torch.Tensor:
        """[1, embed]: kind + kernel + width embeddings of an op name."""
        op = edge_op(name)
        index = torch.tensor([OP_KINDS.index(op.kind)]), torch.tensor([KERNELS.index(op.kernel)])
        return self.kind(index[0]) + self.kernel(index[1]) + self.width(torch.tensor([op.width - 1]))

    def _zeros(self) -> State:
        return State(torch.zeros(1, self.hidden), torch.zeros(1, self.hidden))

    def _up(self, tree: Tree, out: list[torch.Tensor]) -> _Up:
        if isinstance(tree, Edge):
            slot = len(out)
            out.append(torch.empty(0))  # pre-order: the edge's slot comes before the tree it feeds
            then = self._up(tree.then, out) if tree.then is not None else None
            state = State(*self.up_edge(self.op_embedding(tree.op), then.state if then else self._zeros()))
            out[slot] = state.h
            return _Up(state, (then,) if then else ())
        kids = tuple(self._up(branch, out) for branch in tree.branches)
        stacked = State(torch.cat([k.state.h for k in kids]), torch.cat([k.state.c for k in kids]))
        step = self.up_add if tree.merge == "add" else self.up_cat
        return _Up(step(self._merge_embedding(tree), stacked), kids)

    def _down(self, tree: Tree, up: _Up, incoming: State, out: list[torch.Tensor]) -> None:
        if isinstance(tree, Edge):
            state = State(*self.down_edge(self.op_embedding(tree.op), incoming))
            out.append(state.h)
            if tree.then is not None:
                self._down(tree.then, up.kids[0], state, out)
            return
        stacked = State(torch.cat([k.state.h for k in up.kids]), torch.cat([k.state.c for k in up.kids]))
        step = self.down_add if tree.merge == "add" else self.down_cat
        states = step(self._merge_embedding(tree), incoming, stacked)
        for j, (branch, kid) in enumerate(zip(tree.branches, up.kids, strict=True)):
            self._down(branch, kid, State(states.h[j : j + 1], states.c[j : j + 1]), out)

    def _merge_embedding(self, node: Node) -> torch.Tensor:
        return self.merge(torch.tensor([MERGE_WORDS.index(node.word)]))


def _cell(iou: torch.Tensor, carried: torch.Tensor) -> State:
    """LSTM output from the stacked input, output and update pre-activations and the carried memory."""
    i, o, u = iou.chunk(3, dim=1)
    c = torch.sigmoid(i) * torch.tanh(u) + carried
    return State(torch.sigmoid(o) * torch.tanh(c), c)


def _padded(h: torch.Tensor, arity: int) -> torch.Tensor:
    return torch.cat([h, h.new_zeros(arity - h.shape[0], h.shape[1])])


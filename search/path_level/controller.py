"""The meta-controller of Cai et al. (ICML 2018): a bidirectional Tree-LSTM reads every cell, actors
choose a move, REINFORCE trains them.

A move is drawn as a chain of small decisions, each a categorical masked to the choices that still
lead to a legal move (``moves.legal_moves``), so an illegal move never gets probability:
1. where: one score per edge (its bottom-up and top-down states) and one per layer (its cell's
   summary, for a new layer after it), each with the layer's position; a softmax over all of them.
   The paper visits nodes in turn and asks "expand or not" at each; one pointer over the sites
   instead gives every sample exactly one move, which is what one fine-tune and one reward pay for;
2. which transformation (at an edge: widen, deepen_edge, branch, insert_node, replace_identity);
3. its arguments: merge type (add / concat), then branch count with one head per merge as in the
   official SetMergeTypeActor; the new op (one head per transformation); the widen factor.
Each actor is an MLP (one ReLU hidden layer) on the site's features.

Defaults, from the official code (github.com/han-cai/PathLevel-EAS, code/CIFAR/arch_search/
arch_search_tree_cell.py and meta_controller/): op and merge embeddings of 10, 100 hidden units per
direction, actor hidden layers 2.5 times their input, embeddings uniform in +-0.1 and recurrent
weights orthogonal; Adam at 6e-3, entropy bonus 1e-2, gradient norm clipped at 40, batches of 10
networks (the caller's k), and a baseline that moves 0.95 of the way to each batch's mean reward (``baseline +=
0.95 * (mean - baseline)``, updated before the advantages are taken), with a batch of equal rewards
skipped. The seed texts give the paper's abstract only; none of these figures come from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .cell import PathArch
from .moves import BRANCH_COUNTS, EDGE_KINDS, IDENTITY_OPS, LAYER_OPS, MERGES, WIDEN_FACTORS, Move, legal_moves
from .policy import Step
from .tree_lstm import TreeEncoder

POSITION_FEATURES = 3  # layer index / last index, a stride-2 layer, a residual layer
LEGAL_CACHE = 256  # archs whose legal moves are remembered (sampling and updating ask for the same ones)


@dataclass(frozen=True)
class ControllerSettings:
    """The controller's sizes and training constants; defaults from the official code (module docstring)."""

    embed: int = 10  # op, kernel, width and merge embeddings
    hidden: int = 100  # Tree-LSTM units per direction; an edge's features are twice this, plus its position
    actor_scale: float = 2.5  # an actor's hidden units per input feature
    lr: float = 6e-3  # Adam
    entropy_weight: float = 1e-2  # the entropy bonus, against an early collapse onto one move
    baseline_step: float = 0.95  # baseline += baseline_step * (batch mean reward - baseline)
    max_grad_norm: float = 40.0
    seed: int = 0  # initial weights and every draw (a run reproduces)

    def __post_init__(self) -> None:
        if min(self.embed, self.hidden) < 1 or self.actor_scale <= 0:
            raise ValueError("embed, hidden and actor_scale must be positive")
        if self.lr < 0 or self.entropy_weight < 0 or self.max_grad_norm <= 0:
            raise ValueError("lr and entropy_weight must not be negative, max_grad_norm must be positive")
        if not 0.0 < self.baseline_step <= 1.0:
            raise ValueError(f"baseline_step must be in (0, 1], got {self.baseline_step}")


@dataclass(frozen=True)
class _Site:
    """Where moves start: an edge (``edge`` set) or a layer (a new layer after it), and its legal moves."""

    layer: int
    edge: int | None
    width: int  # the edge op's hidden width (widen maps factors to widths); 1 for a layer
    moves: tuple[Move, ...]


@dataclass(frozen=True)
class _Encoded:
    """An arch read by the encoder: each site's features [sites, features] and the site list."""

    features: torch.Tensor
    sites: tuple[_Site, ...]


class TreeController(nn.Module):
    """Bidirectional Tree-LSTM meta-controller with masked actors; a ``Policy`` (see policy.py)."""

    def __init__(self, settings: ControllerSettings | None = None) -> None:
        super().__init__()
        self.settings = settings = settings or ControllerSettings()
        features = 2 * settings.hidden + POSITION_FEATURES
        units = max(1, round(settings.actor_scale * features))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)
            self.encoder = TreeEncoder(settings.embed, settings.hidden)
            self.encoder.reset_parameters()

            def actor(outputs: int) -> nn.Sequential:
                return nn.Sequential(nn.Linear(features, units), nn.ReLU(), nn.Linear(units, outputs))

            self.edge_site, self.layer_site = actor(1), actor(1)
            self.kind = actor(len(EDGE_KINDS))
            self.merge = actor(len(MERGES))
            self.count = nn.ModuleDict({name: actor(len(BRANCH_COUNTS)) for name in ("add", "concat", "insert_node")})
            self.op = nn.ModuleDict({"replace_identity": actor(len(IDENTITY_OPS)),
                                     "deepen_edge": actor(len(IDENTITY_OPS)), "deepen_layer": actor(len(LAYER_OPS))})
            self.widen = actor(len(WIDEN_FACTORS))
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=settings.lr)
        self.baseline: float | None = None
        self._legal: dict[PathArch, tuple[Move, ...]] = {}

    # --- the Policy interface -----------------------------------------------------------------
    def sample(self, arch: PathArch, k: int) -> list[Step]:
        """`k` independent draws from one reading of `arch`."""
        with torch.no_grad():
            encoded = self._encode(arch)
            return [Step(arch, move, float(log_prob), float(entropy))
                    for move, log_prob, entropy in (self._walk(encoded, None) for _ in range(k))]

    def update(self, episodes: Sequence[Sequence[Step]], rewards: Sequence[float]) -> None:
        """One REINFORCE step: loss = -mean(advantage * log p(episode)) - entropy_weight * mean(entropy),
        log p and entropy summed over an episode's steps and recomputed under the current parameters."""
        if len(episodes) != len(rewards) or not episodes:
            raise ValueError(f"need one reward per episode, got {len(episodes)} episodes and {len(rewards)} rewards")
        if not all(episodes):
            raise ValueError("every episode needs at least one step")
        values = [float(r) for r in rewards]
        mean = sum(values) / len(values)
        self.baseline = mean if self.baseline is None else \
            self.baseline + self.settings.baseline_step * (mean - self.baseline)
        if len(values) > 1 and max(values) == min(values):
            return  # nothing tells the episodes apart
        encoded: dict[PathArch, _Encoded] = {}
        log_probs, entropies = [], []
        for episode in episodes:
            total_log_prob, total_entropy = torch.zeros(()), torch.zeros(())
            for step in episode:
                if step.arch not in encoded:
                    encoded[step.arch] = self._encode(step.arch)
                _, log_prob, entropy = self._walk(encoded[step.arch], step.move)
                total_log_prob, total_entropy = total_log_prob + log_prob, total_entropy + entropy
            log_probs.append(total_log_prob)
            entropies.append(total_entropy)
        advantages = torch.tensor([value - self.baseline for value in values])
        bonus = self.settings.entropy_weight * torch.stack(entropies).mean()
        loss = -(advantages * torch.stack(log_probs)).mean() - bonus
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.parameters(), self.settings.max_grad_norm)
        self.optimizer.step()

    # --- reading the policy -------------------------------------------------------------------
    def log_prob(self, arch: PathArch, move: Move) -> torch.Tensor:
        """log p(move | arch) under the current parameters (differentiable); ValueError if the move is illegal."""
        return self._walk(self._encode(arch), move)[1]

    def probabilities(self, arch: PathArch) -> dict[Move, float]:
        """p(move | arch) of every legal move (they sum to 1)."""
        with torch.no_grad():
            encoded = self._encode(arch)
            moves = [move for site in encoded.sites for move in site.moves]
            return {move: math.exp(float(self._walk(encoded, move)[1])) for move in moves}

    # --- resume -------------------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        """Everything a resumed run needs to draw and learn exactly as this one would."""
        return {"parameters": self.state_dict(), "optimizer": self.optimizer.state_dict(),
                "baseline": self.baseline, "generator": self.generator.get_state()}

    def restore(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`checkpoint`."""
        self.load_state_dict(state["parameters"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = state["baseline"]
        self.generator.set_state(state["generator"])

    # --- internals ----------------------------------------------------------------------------
    def _moves(self, arch: PathArch) -> tuple[Move, ...]:
        if arch not in self._legal:
            if len(self._legal) >= LEGAL_CACHE:
                self._legal.clear()
            self._legal[arch] = tuple(legal_moves(arch))
        return self._legal[arch]

    def _encode(self, arch: PathArch) -> _Encoded:
        """Features of every site that has a legal move: [edge or cell state, position]."""
        by_site: dict[tuple[int, int | None], list[Move]] = {}
        for move in self._moves(arch):
            by_site.setdefault((move.layer, move.edge), []).append(move)
        if not by_site:
            raise ValueError(f"no legal move on {arch}")
        layers = arch.space.layers()
        last = max(1, len(layers) - 1)
        rows, sites = [], []
        for index, (layer, cell) in enumerate(zip(layers, arch.cells, strict=True)):
            wanted = sorted(edge for (at, edge) in by_site if at == index and edge is not None)
            if not wanted and (index, None) not in by_site:
                continue
            encoding = self.encoder(cell)
            position = torch.tensor([index / last, float(layer.stride > 1), float(layer.residual)])
            edge_sites = arch.sites(index)
            for edge in wanted:
                rows.append(torch.cat([encoding.edges[edge], position]))
                sites.append(_Site(index, edge, edge_sites[edge].op.width, tuple(by_site[(index, edge)])))
            if (index, None) in by_site:
                rows.append(torch.cat([encoding.cell, position]))
                sites.append(_Site(index, None, 1, tuple(by_site[(index, None)])))
        return _Encoded(torch.stack(rows), tuple(sites))

    def _walk(self, encoded: _Encoded, forced: Move | None) -> tuple[Move, torch.Tensor, torch.Tensor]:
        """Draw a move (or, with `forced`, follow its choices): the move, its log-probability and the
        summed entropies of the decisions taken."""
        features = encoded.features
        is_edge = torch.tensor([site.edge is not None for site in encoded.sites])
        scores = torch.where(is_edge, self.edge_site(features)[:, 0], self.layer_site(features)[:, 0])
        targets = [(site.layer, site.edge) for site in encoded.sites]
        index, log_prob, entropy = self._decide(scores, targets, lambda t: t in targets,
                                                None if forced is None else (forced.layer, forced.edge))
        site, x = encoded.sites[index], features[index]
        remaining = list(site.moves)

        def decide(head: nn.Module, options: Sequence[Hashable], key: Callable[[Move], Hashable]) -> Hashable:
            nonlocal remaining, log_prob, entropy
            present = {key(move) for move in remaining}
            chosen, step_log_prob, step_entropy = self._decide(head(x), list(options), present.__contains__,
                                                                None if forced is None else key(forced))
            value = options[chosen]
            remaining = [move for move in remaining if key(move) == value]
            log_prob, entropy = log_prob + step_log_prob, entropy + step_entropy
            return value

        if site.edge is None:
            decide(self.op["deepen_layer"], LAYER_OPS, lambda m: m.op)
        else:
            kind = decide(self.kind, EDGE_KINDS, lambda m: m.kind)
            if kind == "widen":
                widths = [math.ceil(site.width * factor) for factor in WIDEN_FACTORS]
                decide(self.widen, widths, lambda m: m.width)
            elif kind == "branch":
                merge = decide(self.merge, MERGES, lambda m: m.merge)
                decide(self.count[str(merge)], BRANCH_COUNTS, lambda m: m.count)
            elif kind == "insert_node":
                decide(self.count["insert_node"], BRANCH_COUNTS, lambda m: m.count)
            else:
                decide(self.op[str(kind)], IDENTITY_OPS, lambda m: m.op)
        if len(remaining) != 1:
            raise AssertionError(f"the decisions left {len(remaining)} moves at {site}")
        if forced is not None and remaining[0] != forced:
            raise ValueError(f"{forced} is not a legal move here")
        return remaining[0], log_prob, entropy

    def _decide(
        self, logits: torch.Tensor, options: list[Any], allowed: Callable[[Any], bool], forced: Hashable | None
    ) -> tuple[int, torch.Tensor, torch.Tensor]:
        """One masked categorical: the option drawn (or `forced`), its log-probability, the entropy.
        An option is allowed when it leads to a legal move and is not a repeat of an earlier one
        (two widen factors can round to one width)."""
        mask = torch.tensor([allowed(option) and option not in options[:i] for i, option in enumerate(options)])
        log_p = torch.log_softmax(logits.masked_fill(~mask, -math.inf), dim=0)
        entropy = -(log_p.exp() * log_p.masked_fill(~mask, 0.0)).sum()
        if forced is None:
            chosen = int(torch.multinomial(log_p.exp(), 1, generator=self.generator))
        else:
            if forced not in options or not mask[options.index(forced)]:
                raise ValueError(f"{forced!r} is not a legal choice here (choices: {options})")
            chosen = options.index(forced)
        return chosen, log_p[chosen], entropy

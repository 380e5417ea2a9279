"""The over-parameterised network: one MixedOp per searchable layer, binarized paths.

Modes of a MixedOp (ProxylessNAS, Cai et al. 2019, section 3.2):
- ``single``: one path sampled from softmax(alpha) runs (weight steps, REINFORCE, evaluation);
  memory is that of one network.
- ``two``: two paths sampled, gates g (one-hot on the chosen one) multiply their outputs; the
  gradient dL/dg estimates dL/dalpha through dp/dalpha (binary-gate gradient); only the two
  paths run and only their alphas move (rescaled so the others keep their probability).
- ``all``: DARTS-style softmax-weighted sum of every path (only for the memory benchmark).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from .ops import SharedMBConvWeights, SlicedMBConv, Zero, make_op, parse_op
from .space import ArchSpec, LayerSpec, Network, SearchSpace, build_head, build_stem

Mode = Literal["single", "two", "all"]


class MixedOp(nn.Module):
    """The candidate ops of one layer and its architecture parameters `alpha`."""

    def __init__(self, layer: LayerSpec, share_weights: bool = True) -> None:
        super().__init__()
        self.names = layer.ops
        mbconv = [parse_op(op) for op in layer.ops if op != "zero"]
        if share_weights and len(mbconv) > 1:
            self.shared = SharedMBConvWeights(
                layer.in_channels, layer.out_channels, max(k for k, _ in mbconv), max(e for _, e in mbconv)
            )
            self.candidates = nn.ModuleList(
                Zero() if op == "zero"
                else SlicedMBConv(self.shared, layer.in_channels, layer.out_channels, *parse_op(op), layer.stride)
                for op in layer.ops
            )
        else:
            self.candidates = nn.ModuleList(
                make_op(op, layer.in_channels, layer.out_channels, layer.stride) for op in layer.ops
            )
        self.alpha = nn.Parameter(torch.zeros(len(layer.ops)))
        self.mode: Mode = "single"
        self.active: list[int] = [0]  # paths that run in this step (two in mode "two")
        self.gates: torch.Tensor | None = None
        self.log_prob: torch.Tensor | None = None
        self._old_alpha: torch.Tensor | None = None

    def probs(self) -> torch.Tensor:
        """softmax(alpha)."""
        return torch.softmax(self.alpha, dim=0)

    def sample_single(self, gen: torch.Generator) -> int:
        """Sample one path from softmax(alpha); keeps its log-probability for REINFORCE."""
        probs = self.probs()
        index = int(torch.multinomial(probs.detach(), 1, generator=gen))
        self.mode, self.active, self.gates = "single", [index], None
        self.log_prob = torch.log(probs[index])
        return index

    def sample_two(self, gen: torch.Generator) -> list[int]:
        """Sample two distinct paths, then the active one among them; gates are one-hot on it."""
        n = len(self.names)
        if n == 1:
            pair = [0]
        else:
            pair = [int(i) for i in torch.multinomial(self.probs().detach(), 2, replacement=False, generator=gen)]
            inner = torch.softmax(self.alpha.detach()[pair], dim=0)
            if int(torch.multinomial(inner, 1, generator=gen)) == 1:
                pair.reverse()  # pair[0] is the active path
        gates = torch.zeros(n)
        gates[pair[0]] = 1.0
        self.mode, self.active = "two", pair
        self.gates = gates.requires_grad_(True)
        self._old_alpha = self.alpha.detach()[pair].clone()
        return pair

    def choose(self, index: int) -> None:
        """Run path `index` alone (argmax evaluation)."""
        self.mode, self.active, self.gates = "single", [index], None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "all":
            probs = self.probs()
            return sum(p * op(x) for p, op in zip(probs, self.candidates, strict=True))  # type: ignore[return-value]
        if self.mode == "two":
            assert self.gates is not None
            out = self.gates[self.active[0]] * self.candidates[self.active[0]](x)
            for i in self.active[1:]:
                out = out + self.gates[i] * self.candidates[i](x)
            return out
        return self.candidates[self.active[0]](x)

    def alpha_grad_from_gates(self, gate_grad: torch.Tensor) -> torch.Tensor:
        """dL/dalpha_i ~= sum_j dL/dg_j p_j (delta_ij - p_i) over the two sampled paths."""
        grad = torch.zeros_like(self.alpha)
        pair = self.active
        probs = torch.softmax(self.alpha.detach()[pair], dim=0)
        for a, i in enumerate(pair):
            for b, j in enumerate(pair):
                grad[i] += gate_grad[j] * probs[b] * ((1.0 if a == b else 0.0) - probs[a])
        return grad

    @torch.no_grad()
    def rescale_alpha(self) -> None:
        """After an update of the two sampled alphas, shift them so the unsampled paths keep their probability."""
        if self._old_alpha is None or len(self.active) < 2:
            return
        pair = self.active
        new = self.alpha[pair]
        offset = torch.logsumexp(new, 0) - torch.logsumexp(self._old_alpha, 0)
        self.alpha[pair] -= offset


class SuperLayer(nn.Module):
    """A MixedOp plus the identity shortcut where the layer has one."""

    def __init__(self, layer: LayerSpec, share_weights: bool = True) -> None:
        super().__init__()
        self.mixed = MixedOp(layer, share_weights)
        self.residual = layer.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mixed(x)
        return x + y if self.residual else y


class Supernet(nn.Module):
    """Stem, one SuperLayer per searchable layer, head.

    With `share_weights` (default) the MBConv candidates of a layer slice one superkernel
    (SharedMBConvWeights); otherwise each candidate has its own weights, as in the paper.
    """

    def __init__(self, space: SearchSpace, share_weights: bool = True) -> None:
        super().__init__()
        self.space = space
        self.stem = build_stem(space)
        self.layers = nn.ModuleList(SuperLayer(layer, share_weights) for layer in space.layers())
        self.head = build_head(space)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return self.head(x)

    def mixed_ops(self) -> list[MixedOp]:
        return [layer.mixed for layer in self.layers]

    def arch_parameters(self) -> list[nn.Parameter]:
        """One alpha vector per layer."""
        return [m.alpha for m in self.mixed_ops()]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter except the alphas."""
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def probs(self) -> list[torch.Tensor]:
        """softmax(alpha) per layer (differentiable)."""
        return [m.probs() for m in self.mixed_ops()]

    def sample_single(self, gen: torch.Generator) -> tuple[str, ...]:
        """Sample one path per layer; returns the sampled ops."""
        return tuple(m.names[m.sample_single(gen)] for m in self.mixed_ops())

    def sample_two(self, gen: torch.Generator) -> None:
        """Sample two paths per layer for a binary-gate gradient step."""
        for m in self.mixed_ops():
            m.sample_two(gen)

    def set_all_paths(self) -> None:
        """DARTS-style: every path runs, weighted by softmax(alpha) (benchmark only)."""
        for m in self.mixed_ops():
            m.mode = "all"

    def log_prob(self) -> torch.Tensor:
        """Sum of log-probabilities of the paths sampled by :meth:`sample_single`."""
        return torch.stack([m.log_prob for m in self.mixed_ops()]).sum()  # type: ignore[misc]

    def derive(self) -> ArchSpec:
        """The most probable op per layer."""
        return ArchSpec(self.space, tuple(m.names[int(torch.argmax(m.alpha))] for m in self.mixed_ops()))

    def choose(self, arch: ArchSpec) -> None:
        """Run exactly the paths of `arch`."""
        for m, op in zip(self.mixed_ops(), arch.ops, strict=True):
            m.choose(m.names.index(op))

    def probabilities(self) -> list[dict[str, float]]:
        """softmax(alpha) per layer as {op: probability} (for search.json)."""
        return [
            {name: round(float(p), 6) for name, p in zip(m.names, m.probs().detach(), strict=True)}
            for m in self.mixed_ops()
        ]


def inherit_weights(net: Network, supernet: Supernet, arch: ArchSpec) -> None:
    """Copy the chosen paths' weights (and the stem and head) from `supernet` into `net`."""
    net.stem.load_state_dict(supernet.stem.state_dict())
    net.head.load_state_dict(supernet.head.state_dict())
    for layer, super_layer, op in zip(net.layers, supernet.layers, arch.ops, strict=True):
        if op != "zero":
            mixed = super_layer.mixed
            chosen = mixed.candidates[mixed.names.index(op)]
            state = chosen.plain_state_dict() if isinstance(chosen, SlicedMBConv) else chosen.state_dict()
            layer.op.load_state_dict(state)

"""The search space (MobileNetV2-style backbone), ArchSpec (a chosen network as data) and `build`.

An ArchSpec names one op per searchable layer; its compact form per block follows timm's spirit:
``ir_k5_e6_s2_c40`` (inverted residual, kernel 5, expansion 6, stride 2, 40 output channels)
or ``zero`` (layer skipped).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nasc.signature import BlockSignature
from nasc.typed_toml import from_mapping, to_plain

from .ops import Head, Layer, build_block, conv_bn, make_op, op_signature, parse_op
from .settings import SpaceSettings

ARCH_FORMAT = 1


@dataclass(frozen=True)
class LayerSpec:
    """One searchable layer: its position, shapes and the ops it may choose."""

    index: int
    in_channels: int
    out_channels: int
    in_size: int
    stride: int
    ops: tuple[str, ...]

    @property
    def residual(self) -> bool:
        """Whether the layer has an identity shortcut (stride 1, equal channels)."""
        return self.stride == 1 and self.in_channels == self.out_channels

    def signature(self, op: str) -> BlockSignature:
        """The BlockSignature of `op` at this layer."""
        return op_signature(op, self.in_channels, self.out_channels, self.in_size, self.stride)

    def block_string(self, op: str) -> str:
        """Compact form, e.g. ``ir_k5_e6_s2_c40`` or ``zero``."""
        if op == "zero":
            return "zero"
        kernel, expand = parse_op(op)
        return f"ir_k{kernel}_e{expand}_s{self.stride}_c{self.out_channels}"


@dataclass(frozen=True)
class SearchSpace:
    """A backbone from [search.space] for a task with `num_classes` classes."""

    settings: SpaceSettings
    num_classes: int

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {self.num_classes}")

    def _stem_size(self) -> int:
        return (self.settings.resolution + self.settings.stem_stride - 1) // self.settings.stem_stride

    def layers(self) -> list[LayerSpec]:
        """Every searchable layer, in order."""
        result: list[LayerSpec] = []
        cin, size = self.settings.stem_channels, self._stem_size()
        for stage in self.settings.stages:
            for i in range(stage.depth):
                stride = stage.stride if i == 0 else 1
                residual = stride == 1 and cin == stage.channels
                ops = tuple(op for op in self.settings.ops if op != "zero" or residual)
                result.append(LayerSpec(len(result), cin, stage.channels, size, stride, ops))
                cin, size = stage.channels, (size + stride - 1) // stride
        return result

    def stem_signature(self) -> BlockSignature:
        """The fixed stem: 3x3 conv, BN, ReLU6."""
        s = self.settings
        return BlockSignature(
            op="stem", in_channels=s.in_channels, out_channels=s.stem_channels,
            in_size=s.resolution, kernel=3, stride=s.stem_stride,
        )

    def head_signature(self) -> BlockSignature:
        """The fixed head: 1x1 conv (x head_expand), global pool, linear to the classes."""
        last = self.layers()[-1]
        return BlockSignature(
            op="head", in_channels=last.out_channels, out_channels=self.num_classes,
            in_size=(last.in_size + last.stride - 1) // last.stride, expand=self.settings.head_expand,
        )

    def candidate_blocks(self) -> list[BlockSignature]:
        """Every distinct block a latency table must hold: stem, each (layer, op), head; never `zero`."""
        seen: dict[BlockSignature, None] = {self.stem_signature(): None}
        for layer in self.layers():
            for op in layer.ops:
                if op != "zero":
                    seen.setdefault(layer.signature(op), None)
        seen.setdefault(self.head_signature(), None)
        return list(seen)

    def input_shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        """NCHW input shape of every network of the space."""
        s = self.settings
        return (batch, s.in_channels, s.resolution, s.resolution)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"settings": to_plain(self.settings), "num_classes": self.num_classes}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "arch.json") -> SearchSpace:
        """Inverse of :meth:`to_dict`; errors name `source`."""
        settings = from_mapping(SpaceSettings, data["settings"], source, "space.settings")
        return cls(settings=settings, num_classes=int(data["num_classes"]))


@dataclass(frozen=True)
class ArchSpec:
    """A chosen network: one op per searchable layer of `space`."""

    space: SearchSpace
    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        layers = self.space.layers()
        if len(self.ops) != len(layers):
            raise ValueError(f"the space has {len(layers)} searchable layers, the arch names {len(self.ops)} ops")
        for layer, op in zip(layers, self.ops, strict=True):
            if op not in layer.ops:
                raise ValueError(
                    f"layer {layer.index}: op {op!r} is not a candidate there; choose from {list(layer.ops)}"
                )

    def block_strings(self) -> list[str]:
        """Compact form per searchable layer (``ir_k5_e6_s2_c40`` or ``zero``)."""
        return [layer.block_string(op) for layer, op in zip(self.space.layers(), self.ops, strict=True)]

    def __str__(self) -> str:
        return " ".join(self.block_strings())

    def blocks(self) -> list[BlockSignature]:
        """The blocks the network runs, in order: stem, each non-zero layer, head."""
        inner = [layer.signature(op) for layer, op in zip(self.space.layers(), self.ops, strict=True) if op != "zero"]
        return [self.space.stem_signature(), *inner, self.space.head_signature()]

    def input_shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        """NCHW input shape."""
        return self.space.input_shape(batch)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the content of arch.json)."""
        return {
            "format": ARCH_FORMAT,
            "blocks": self.block_strings(),
            "ops": list(self.ops),
            "input_shape": list(self.input_shape()),
            "space": self.space.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "arch.json") -> ArchSpec:
        """Inverse of :meth:`to_dict`; a mismatch raises ValueError naming `source`."""
        if data.get("format") != ARCH_FORMAT:
            raise ValueError(f"{source}: unknown arch format {data.get('format')!r}, expected {ARCH_FORMAT}")
        arch = cls(space=SearchSpace.from_dict(data["space"], source), ops=tuple(data["ops"]))
        if "blocks" in data and list(data["blocks"]) != arch.block_strings():
            raise ValueError(f"{source}: 'blocks' {data['blocks']} disagree with 'ops' {list(arch.ops)}")
        return arch

    @classmethod
    def uniform(cls, space: SearchSpace, op: str) -> ArchSpec:
        """Every layer `op` (layers where it is not a candidate fall back to their first op)."""
        return cls(space, tuple(op if op in layer.ops else layer.ops[0] for layer in space.layers()))


class Network(nn.Module):
    """A final network: stem, searchable layers, head."""

    def __init__(self, stem: nn.Module, layers: list[nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.stem = stem
        self.layers = nn.ModuleList(layers)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


def build_stem(space: SearchSpace) -> nn.Module:
    """The stem module of `space`."""
    return build_block(space.stem_signature())


def build_head(space: SearchSpace) -> Head:
    """The head module of `space`."""
    sig = space.head_signature()
    return Head(sig.in_channels, sig.out_channels, sig.expand)


def build(arch: ArchSpec) -> Network:
    """The trainable network of `arch` (weights initialised from torch's current RNG)."""
    layers: list[nn.Module] = []
    for layer, op in zip(arch.space.layers(), arch.ops, strict=True):
        body = None if op == "zero" else make_op(op, layer.in_channels, layer.out_channels, layer.stride)
        layers.append(Layer(body, residual=layer.residual))
    return Network(build_stem(arch.space), layers, build_head(arch.space))


__all__ = ["ArchSpec", "LayerSpec", "Network", "SearchSpace", "build", "build_block", "conv_bn", "op_signature"]

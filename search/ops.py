"""The building blocks of the space (stem, MBConv, zero, head) and `build_block(signature)`.

Every block is plain torch (Conv2d, BatchNorm2d, ReLU6, pooling, Linear) so it exports to ONNX
opset 17 and imports into TVM. ``build_block`` is what devices/ uses to export one block for
measuring: the module it returns is exactly the module the searched network contains.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasc.signature import BlockSignature

from .settings import OP_PATTERN


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    """Conv (same padding, no bias) + BatchNorm (+ ReLU6)."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual body (no shortcut): 1x1 expand, kxk depthwise, 1x1 project."""

    def __init__(self, cin: int, cout: int, kernel: int, expand: int, stride: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = conv_bn(cin, mid, 1) if expand != 1 else nn.Identity()
        self.depthwise = conv_bn(mid, mid, kernel, stride, groups=mid)
        self.project = conv_bn(mid, cout, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.depthwise(self.expand(x)))


class Zero(nn.Module):
    """The `zero` op: contributes nothing (with the layer's shortcut, the layer is skipped)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


class Head(nn.Module):
    """1x1 conv to `cin * expand`, global average pool, linear to `classes`."""

    def __init__(self, cin: int, classes: int, expand: int) -> None:
        super().__init__()
        self.conv = conv_bn(cin, cin * expand, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin * expand, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.conv(x)), 1))


class Layer(nn.Module):
    """One searchable layer of a final network: its op (None when skipped) and the shortcut."""

    def __init__(self, op: nn.Module | None, residual: bool) -> None:
        super().__init__()
        self.op = op
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.op is None:
            return x
        y = self.op(x)
        return x + y if self.residual else y


def parse_op(name: str) -> tuple[int, int]:
    """'k5_e6' -> (kernel 5, expansion 6)."""
    match = OP_PATTERN.match(name)
    if not match:
        raise ValueError(f"not an MBConv op name: {name!r}")
    return int(match["kernel"]), int(match["expand"])


def make_op(name: str, cin: int, cout: int, stride: int) -> nn.Module:
    """A candidate op by name, without shortcut (the layer adds it)."""
    if name == "zero":
        if stride != 1 or cin != cout:
            raise ValueError("zero is only a candidate where stride is 1 and channels match")
        return Zero()
    kernel, expand = parse_op(name)
    return MBConv(cin, cout, kernel, expand, stride)


def op_signature(name: str, cin: int, cout: int, in_size: int, stride: int) -> BlockSignature:
    """The BlockSignature of op `name` at one layer position."""
    idskip = stride == 1 and cin == cout
    if name == "zero":
        return BlockSignature(op="zero", in_channels=cin, out_channels=cout, in_size=in_size, idskip=True)
    kernel, expand = parse_op(name)
    return BlockSignature(
        op="mbconv", in_channels=cin, out_channels=cout, in_size=in_size,
        kernel=kernel, expand=expand, stride=stride, idskip=idskip,
    )


def build_block(sig: BlockSignature) -> nn.Module:
    """The module for one block signature, as it appears in a network (input NCHW `sig.input_shape()`)."""
    if sig.op == "stem":
        return conv_bn(sig.in_channels, sig.out_channels, sig.kernel, sig.stride)
    if sig.op == "mbconv":
        body = MBConv(sig.in_channels, sig.out_channels, sig.kernel, sig.expand, sig.stride)
        if sig.idskip and (sig.stride != 1 or sig.in_channels != sig.out_channels):
            raise ValueError(f"{sig.key()}: idskip needs stride 1 and equal channels")
        return Layer(body, residual=sig.idskip)
    if sig.op == "head":
        return Head(sig.in_channels, sig.out_channels, sig.expand)
    if sig.op == "zero":
        return Layer(None, residual=True)
    raise ValueError(f"{sig.key()}: unknown block op {sig.op!r}; known: stem, mbconv, head, zero")


class SharedMBConvWeights(nn.Module):
    """The conv weights every MBConv candidate of one layer slices (superkernel, as in Single-Path NAS
    and once-for-all): the k x k depthwise kernel is the centre of the largest one, an expansion e
    uses the first cin*e hidden channels. Candidates keep their own batch norms."""

    def __init__(self, cin: int, cout: int, max_kernel: int, max_expand: int) -> None:
        super().__init__()
        mid = cin * max_expand
        self.expand = nn.Parameter(torch.empty(mid, cin, 1, 1))
        self.depthwise = nn.Parameter(torch.empty(mid, 1, max_kernel, max_kernel))
        self.project = nn.Parameter(torch.empty(cout, mid, 1, 1))
        for weight in (self.expand, self.depthwise, self.project):
            nn.init.kaiming_uniform_(weight, a=5**0.5)  # nn.Conv2d's default


class SlicedMBConv(nn.Module):
    """One MBConv candidate whose conv weights are slices of a SharedMBConvWeights."""

    def __init__(self, shared: SharedMBConvWeights, cin: int, cout: int, kernel: int, expand: int, stride: int) -> None:
        super().__init__()
        object.__setattr__(self, "shared", shared)  # owned (and saved) by the MixedOp, not by each candidate
        self.kernel, self.expand_ratio, self.stride, self.cin = kernel, expand, stride, cin
        mid = cin * expand
        self.bn_expand = nn.BatchNorm2d(mid) if expand != 1 else None
        self.bn_depthwise = nn.BatchNorm2d(mid)
        self.bn_project = nn.BatchNorm2d(cout)

    def weights(self) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """(expand, depthwise, project) conv weights of this candidate."""
        mid = self.cin * self.expand_ratio
        big = self.shared.depthwise.shape[-1]
        lo = (big - self.kernel) // 2
        expand = self.shared.expand[:mid] if self.expand_ratio != 1 else None
        depthwise = self.shared.depthwise[:mid, :, lo : lo + self.kernel, lo : lo + self.kernel]
        return expand, depthwise, self.shared.project[:, :mid]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expand, depthwise, project = self.weights()
        if expand is not None:
            assert self.bn_expand is not None
            x = F.relu6(self.bn_expand(F.conv2d(x, expand)))
        x = F.relu6(self.bn_depthwise(F.conv2d(x, depthwise, stride=self.stride, padding=self.kernel // 2,
                                                groups=depthwise.shape[0])))
        return self.bn_project(F.conv2d(x, project))

    def plain_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict of the equivalent plain MBConv (for the derived network)."""
        expand, depthwise, project = self.weights()
        state: dict[str, torch.Tensor] = {}
        parts = [("expand", expand, self.bn_expand), ("depthwise", depthwise, self.bn_depthwise),
                 ("project", project, self.bn_project)]
        for name, weight, bn in parts:
            if weight is None or bn is None:
                continue
            state[f"{name}.0.weight"] = weight.detach().clone()
            for key, value in bn.state_dict().items():
                state[f"{name}.1.{key}"] = value.clone()
        return state

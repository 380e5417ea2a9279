"""Reference networks for the bundled example, the tests and the benchmarks.

A ProxylessNAS-style MBConv network: stem conv, inverted-residual blocks (1x1 expand, kxk
depthwise, 1x1 project, identity skip where shapes allow), 1x1 head, pool, classifier. BatchNorm
statistics are randomised (seeded) so a parity check sees outputs that depend on the input
(a freshly initialised net gives nearly the same output for any input, so it would check little).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .export import export_onnx

# (kernel, expansion, stride, out_channels) per block: six blocks, ProxylessNAS-mobile flavoured.
REFERENCE_BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (3, 1, 1, 16),
    (5, 3, 2, 24),
    (3, 3, 1, 24),
    (7, 6, 2, 40),
    (5, 3, 1, 40),
    (3, 6, 2, 80),
)


class InvertedResidual(nn.Module):
    """MBConv: expand (1x1), depthwise (kxk, stride), project (1x1); skip when shapes match."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, expand: int, stride: int) -> None:
        super().__init__()
        hidden = in_channels * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(in_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.body = nn.Sequential(*layers)
        self.use_skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        y = self.body(x)
        return x + y if self.use_skip else y


@dataclass(frozen=True)
class ReferenceNet:
    """A reference network and the input shape it expects."""

    module: nn.Module
    input_shape: tuple[int, int, int, int]
    name: str


def randomise(net: nn.Module, seed: int) -> nn.Module:
    """`net` in eval mode with seeded random weights (He-scaled) and BatchNorm statistics."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                # He init keeps activations at unit scale through the depth, so outputs depend on inputs.
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.zero_()
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
                module.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(n, generator=generator) * 0.4 - 0.2)
    return net.eval()


def mbconv_reference(resolution: int = 32, num_classes: int = 10, seed: int = 0) -> ReferenceNet:
    """The six-block MBConv reference network at `resolution` (eval mode, randomised BN stats)."""
    torch.manual_seed(seed)
    stem_channels, head_channels = 16, 160
    layers: list[nn.Module] = [
        nn.Conv2d(3, stem_channels, 3, 2, 1, bias=False),
        nn.BatchNorm2d(stem_channels),
        nn.ReLU6(inplace=True),
    ]
    channels = stem_channels
    for kernel, expand, stride, out_channels in REFERENCE_BLOCKS:
        layers.append(InvertedResidual(channels, out_channels, kernel, expand, stride))
        channels = out_channels
    layers += [
        nn.Conv2d(channels, head_channels, 1, bias=False),
        nn.BatchNorm2d(head_channels),
        nn.ReLU6(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(head_channels, num_classes),
    ]
    net = randomise(nn.Sequential(*layers), seed)
    return ReferenceNet(module=net, input_shape=(1, 3, resolution, resolution), name=f"mbconv-{resolution}")


def main() -> None:
    """Write the reference network as ONNX: python -m nasc.compiler.reference_nets OUT.onnx [RES]."""
    import sys

    out = sys.argv[1] if len(sys.argv) > 1 else "mbconv-32.onnx"
    resolution = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    ref = mbconv_reference(resolution)
    exported = export_onnx(ref.module, ref.input_shape, out)
    print(f"wrote {exported.onnx_path} ({exported.sha256[:12]})")


if __name__ == "__main__":
    main()

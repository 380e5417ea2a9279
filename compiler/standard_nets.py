"""Standard architectures for the compile benchmark, built here in torch (nothing is downloaded).

Networks a firmware team brings rather than ones the tuning work was shaped on: ResNet-18 and -50
(plain and bottleneck convolutions), MobileNetV2 (inverted residuals), ShuffleNetV2 (grouped data
movement: channel split, shuffle and concat), an Inception-style net (four concatenated branches) and
an EfficientNet-B0-style net (squeeze-excitation, SiLU). Layer tables follow the published networks;
weights and BatchNorm statistics are random (seeded, as in reference_nets) so a parity check sees
outputs that depend on the input. Every network takes any resolution that is a multiple of 32.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .reference_nets import InvertedResidual, ReferenceNet, randomise

NUM_CLASSES = 1000


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
             act: type[nn.Module] | None = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


def _classifier(channels: int, num_classes: int) -> list[nn.Module]:
    return [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]


# --- ResNet -----------------------------------------------------------------------------------------
class Residual(nn.Module):
    """A body plus a skip (a strided 1x1 projection where the shape changes), then ReLU."""

    def __init__(self, body: nn.Module, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = body
        self.skip = _conv_bn(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        return self.act(self.body(x) + self.skip(x))


def basic_block(cin: int, width: int, stride: int) -> Residual:
    """Two 3x3 convolutions (the first strided)."""
    return Residual(nn.Sequential(_conv_bn(cin, width, 3, stride), _conv_bn(width, width, 3, act=None)),
                    cin, width, stride)


def bottleneck(cin: int, width: int, stride: int) -> Residual:
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4."""
    body = nn.Sequential(_conv_bn(cin, width, 1), _conv_bn(width, width, 3, stride),
                         _conv_bn(width, 4 * width, 1, act=None))
    return Residual(body, cin, 4 * width, stride)


def _resnet(block: Callable[[int, int, int], Residual], expansion: int, depths: tuple[int, ...],
            num_classes: int) -> nn.Sequential:
    layers: list[nn.Module] = [_conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for stage, depth in enumerate(depths):
        width = 64 * 2**stage
        for i in range(depth):
            layers.append(block(cin, width, 2 if i == 0 and stage > 0 else 1))
            cin = width * expansion
    return nn.Sequential(*layers, *_classifier(cin, num_classes))


def resnet18(num_classes: int = NUM_CLASSES) -> nn.Module:
    """ResNet-18: basic blocks 2-2-2-2."""
    return _resnet(basic_block, 1, (2, 2, 2, 2), num_classes)


def resnet50(num_classes: int = NUM_CLASSES) -> nn.Module:
    """ResNet-50: bottleneck blocks 3-4-6-3."""
    return _resnet(bottleneck, 4, (3, 4, 6, 3), num_classes)


# --- MobileNetV2 --------------------------------------------------------------------------------------
MOBILENETV2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
               (6, 320, 1, 1))  # expansion, channels, repeats, first stride


def mobilenetv2(num_classes: int = NUM_CLASSES) -> nn.Module:
    """MobileNetV2 1.0x: 3x3 inverted residuals, ReLU6, 1280-channel head."""
    layers: list[nn.Module] = [_conv_bn(3, 32, 3, 2, act=nn.ReLU6)]
    cin = 32
    for expand, cout, repeats, stride in MOBILENETV2:
        for i in range(repeats):
            layers.append(InvertedResidual(cin, cout, 3, expand, stride if i == 0 else 1))
            cin = cout
    layers.append(_conv_bn(cin, 1280, 1, act=nn.ReLU6))
    return nn.Sequential(*layers, *_classifier(1280, num_classes))


# --- ShuffleNetV2 -------------------------------------------------------------------------------------
def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of `groups` groups (reshape, transpose, reshape)."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2's unit: stride 1 splits the channels in two and transforms one half; stride 2
    transforms the whole input on two branches; either way the halves are concatenated and shuffled."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = cout // 2
        branch_in = cin if stride == 2 else half
        self.main = nn.Sequential(_conv_bn(branch_in, half, 1), _conv_bn(half, half, 3, stride, half, act=None),
                                  _conv_bn(half, half, 1))
        self.side = (nn.Sequential(_conv_bn(cin, cin, 3, stride, cin, act=None), _conv_bn(cin, half, 1))
                     if stride == 2 else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the unit."""
        if self.side is None:
            kept, changed = x.chunk(2, dim=1)
            out = torch.cat([kept, self.main(changed)], dim=1)
        else:
            out = torch.cat([self.side(x), self.main(x)], dim=1)
        return channel_shuffle(out, 2)


def shufflenetv2(num_classes: int = NUM_CLASSES) -> nn.Module:
    """ShuffleNetV2 1.0x: stages of 4, 8 and 4 units at 116, 232 and 464 channels, a 1024-channel head."""
    layers: list[nn.Module] = [_conv_bn(3, 24, 3, 2), nn.MaxPool2d(3, 2, 1)]
    cin = 24
    for cout, repeats in ((116, 4), (232, 8), (464, 4)):
        for i in range(repeats):
            layers.append(ShuffleUnit(cin, cout, 2 if i == 0 else 1))
            cin = cout
    layers.append(_conv_bn(cin, 1024, 1))
    return nn.Sequential(*layers, *_classifier(1024, num_classes))


# --- Inception ----------------------------------------------------------------------------------------
class InceptionBlock(nn.Module):
    """GoogLeNet's block: 1x1; 1x1 then 3x3; 1x1 then 5x5; 3x3 max pool then 1x1; concatenated."""

    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList([
            _conv_bn(cin, c1, 1),
            nn.Sequential(_conv_bn(cin, c3r, 1), _conv_bn(c3r, c3, 3)),
            nn.Sequential(_conv_bn(cin, c5r, 1), _conv_bn(c5r, c5, 5)),
            nn.Sequential(nn.MaxPool2d(3, 1, 1), _conv_bn(cin, pool, 1)),
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        return torch.cat([branch(x) for branch in self.branches], dim=1)


GOOGLENET = (  # (c1, c3 reduce, c3, c5 reduce, c5, pool), "pool" marks a 3x3 stride-2 max pool
    (64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64), "pool",
    (192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64),
    (112, 144, 288, 32, 64, 64), (256, 160, 320, 32, 128, 128), "pool",
    (256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128),
)


def inception(num_classes: int = NUM_CLASSES) -> nn.Module:
    """GoogLeNet-style: 7x7 stem, 1x1 and 3x3 convolutions, nine four-branch inception blocks."""
    layers: list[nn.Module] = [_conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1), _conv_bn(64, 64, 1),
                               _conv_bn(64, 192, 3), nn.MaxPool2d(3, 2, 1)]
    cin = 192
    for spec in GOOGLENET:
        if spec == "pool":
            layers.append(nn.MaxPool2d(3, 2, 1))
            continue
        assert not isinstance(spec, str)
        c1, c3r, c3, c5r, c5, pool = spec
        layers.append(InceptionBlock(cin, c1, c3r, c3, c5r, c5, pool))
        cin = c1 + c3 + c5 + pool
    return nn.Sequential(*layers, *_classifier(cin, num_classes))


# --- EfficientNet-B0 ----------------------------------------------------------------------------------
class SqueezeExcite(nn.Module):
    """Global pool, 1x1 reduce, SiLU, 1x1 expand, sigmoid gate on the input's channels."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, reduced, 1), nn.SiLU(),
                                  nn.Conv2d(reduced, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale each channel by its gate."""
        return x * self.gate(x)


class MBConvSE(nn.Module):
    """EfficientNet's MBConv: 1x1 expand, kxk depthwise, squeeze-excitation (a quarter of the block's
    input channels), 1x1 project, skip where shapes allow; SiLU."""

    def __init__(self, cin: int, cout: int, kernel: int, expand: int, stride: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = [_conv_bn(cin, hidden, 1, act=nn.SiLU)] if expand != 1 else []
        layers += [_conv_bn(hidden, hidden, kernel, stride, hidden, act=nn.SiLU),
                   SqueezeExcite(hidden, max(1, cin // 4)), _conv_bn(hidden, cout, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.use_skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        y = self.body(x)
        return x + y if self.use_skip else y


EFFICIENTNET_B0 = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
                   (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))  # expansion, kernel, first stride, channels, repeats


def efficientnet_b0(num_classes: int = NUM_CLASSES) -> nn.Module:
    """EfficientNet-B0-style: MBConv with squeeze-excitation and SiLU, 3x3 and 5x5 kernels."""
    layers: list[nn.Module] = [_conv_bn(3, 32, 3, 2, act=nn.SiLU)]
    cin = 32
    for expand, kernel, stride, cout, repeats in EFFICIENTNET_B0:
        for i in range(repeats):
            layers.append(MBConvSE(cin, cout, kernel, expand, stride if i == 0 else 1))
            cin = cout
    layers.append(_conv_bn(cin, 1280, 1, act=nn.SiLU))
    return nn.Sequential(*layers, *_classifier(1280, num_classes))


STANDARD_NETS: dict[str, Callable[[int], nn.Module]] = {
    "resnet18": resnet18, "resnet50": resnet50, "mobilenetv2": mobilenetv2, "shufflenetv2": shufflenetv2,
    "inception": inception, "efficientnet-b0": efficientnet_b0,
}


def standard_net(name: str, resolution: int = 224, num_classes: int = NUM_CLASSES, seed: int = 0) -> ReferenceNet:
    """One of STANDARD_NETS at `resolution` (a multiple of 32), batch 1, eval mode, random seeded weights.

    The name may carry the resolution ("resnet18-96"); ValueError names the choices otherwise."""
    base, _, res = name.rpartition("-") if name.rsplit("-", 1)[-1].isdigit() else (name, "", "")
    if res:
        resolution = int(res)
    if base not in STANDARD_NETS:
        raise ValueError(f"no standard network {base!r}; choose one of {', '.join(STANDARD_NETS)} "
                         "(optionally with -RESOLUTION, e.g. resnet18-96)")
    if resolution % 32:
        raise ValueError(f"{name}: resolution {resolution} is not a multiple of 32 (the networks downsample 32x)")
    torch.manual_seed(seed)
    net = randomise(STANDARD_NETS[base](num_classes), seed)
    return ReferenceNet(module=net, input_shape=(1, 3, resolution, resolution), name=f"{base}-{resolution}")

"""The small space, start cells and 'trained' networks the path-level unit tests share."""

from __future__ import annotations

import torch
from torch import nn

from nasc.search.path_level.cell import PathArch
from nasc.search.path_level.modules import build_path
from nasc.search.settings import SpaceSettings, StageSettings
from nasc.search.space import Network, SearchSpace

SPACE = SearchSpace(
    SpaceSettings(resolution=8, stem_channels=8, stem_stride=1, head_expand=2,
                  stages=(StageSettings(8, depth=2, stride=1), StageSettings(16, depth=2, stride=2))),
    num_classes=4,
)  # layers: 8->8 (residual), 8->8 (residual), 8->16 stride 2, 16->16 (residual)
START = ["k3_e3", "add(sep3,identity)", "cat(sep5,conv1)", "add(max3>conv1,cat_split(identity,avg3))"]


def trained(arch: PathArch, seed: int = 0) -> Network:
    """A network with random BN affine parameters and running statistics from a few train-mode batches."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = build_path(arch)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(module.bias.shape, generator=generator) - 0.5)
        net.train()
        for _ in range(3):
            net(torch.randn(8, *SPACE.input_shape()[1:], generator=generator) * 2 + 0.3)
    return net.eval()

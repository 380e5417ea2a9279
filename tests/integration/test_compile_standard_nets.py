"""Networks the tuning work was not shaped on compile for `local` and match onnxruntime: ShuffleNetV2
(torch's chunk and view(x.size()) export as shape arithmetic, folded before import; channel split,
shuffle and concat on the blocked layout) and EfficientNet-B0 (squeeze-excitation, SiLU); both stay
in the blocked layout from the first convolution to the classifier."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from nasc.compiler.artifact import CompiledArtifact
from nasc.compiler.build import kernel_counts, lower_and_apply
from nasc.compiler.export import export_onnx
from nasc.compiler.frontend import import_onnx
from nasc.compiler.onnx_model import load_onnx
from nasc.compiler.settings import CompileSettings
from nasc.compiler.standard_nets import channel_shuffle, standard_net
from nasc.devices.registry import resolve_device
from nasc.pipeline.compile import compile_onnx


@pytest.mark.parametrize("name", ["shufflenetv2-32", "efficientnet-b0-32"])
def test_standard_network_compiles_and_matches_onnxruntime(name: str, tmp_path: Path) -> None:
    ref = standard_net(name)
    exported = export_onnx(ref.module, ref.input_shape, tmp_path / f"{name}.onnx")
    artifact = compile_onnx(exported.onnx_path, resolve_device("local"), CompileSettings(trials=0, verify_samples=2),
                            tmp_path / "compiled", tmp_path / "cache")
    parity = artifact.parity
    assert parity.checked and parity.passed and parity.samples == 2, parity
    recorded = CompiledArtifact.load(tmp_path / "compiled").kernels  # compile.json counts the kernels
    assert recorded is not None and recorded == artifact.kernels and recorded.calls >= recorded.kernels > 0
    assert recorded.layout_transform_calls == 1, recorded  # the classifier's input back to NCHW, nothing else


def test_channel_shuffles_stay_in_the_blocked_layout(tmp_path: Path) -> None:
    """A chain of convolutions converts twice (its input into the blocked layout, its output back to
    NCHW); a channel shuffle between two convolutions is one gather on blocked tensors, no conversion."""
    class Chain(nn.Module):
        def __init__(self, shuffles: int) -> None:
            super().__init__()
            self.convs = nn.ModuleList([nn.Conv2d(16, 16, 1) for _ in range(3)])
            self.shuffles = shuffles

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for i, conv in enumerate(self.convs):
                x = torch.relu(conv(x))
                if i < self.shuffles:
                    x = channel_shuffle(x, 2)
            return x

    counts = {}
    for shuffles in (0, 2):
        torch.manual_seed(0)
        path = export_onnx(Chain(shuffles).eval(), (1, 16, 8, 8), tmp_path / f"chain{shuffles}.onnx").onnx_path
        lowered, _ = lower_and_apply(import_onnx(load_onnx(path)), resolve_device("local"))
        counts[shuffles] = kernel_counts(lowered)
    assert counts[0].layout_transform_calls == counts[2].layout_transform_calls == 2, counts
    assert counts[2].calls == counts[0].calls + 2, counts  # one gather per shuffle
    assert counts[0].calls >= 3 and counts[0].kernels <= counts[0].calls

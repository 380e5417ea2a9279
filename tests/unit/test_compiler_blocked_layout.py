"""The channel-blocked layout pass: same numbers as onnxruntime, and it really converts the network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from nasc.compiler.blocked_layout import (
    block_channel_constant,
    block_dense_kernel,
    block_depthwise_kernel,
    block_for,
    channel_block,
)
from nasc.compiler.target import tvm_target
from nasc.devices.registry import resolve_device


class _MixedNet(nn.Module):
    """Every case the pass handles, and one it must leave alone (a grouped, non-depthwise conv)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)  # fewer input channels than a block
        self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.project = nn.Conv2d(16, 16, 1)
        self.expand = nn.Conv2d(16, 24, 1)  # 24 channels: block 8
        self.depthwise_s2 = nn.Conv2d(24, 24, 5, stride=2, padding=2, groups=24)
        self.branch_a = nn.Conv2d(24, 12, 1)  # 12 channels: block 4
        self.branch_b = nn.Conv2d(24, 12, 3, padding=1)
        self.grouped = nn.Conv2d(24, 16, 3, padding=1, groups=2)  # stays NCHW
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.clamp(self.stem(x), 0.0, 6.0)
        x = x + self.project(torch.relu(self.depthwise(x)))  # residual add of two blocked tensors
        x = torch.clamp(self.depthwise_s2(torch.clamp(self.expand(x), 0.0, 6.0)), 0.0, 6.0)
        x = torch.cat([torch.relu(self.branch_a(x)), torch.relu(self.branch_b(x))], dim=1)
        x = nn.functional.max_pool2d(x, 3, stride=2)
        x = torch.relu(self.grouped(x))
        return self.head(x.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def mixed_onnx(tmp_path_factory) -> Path:
    from nasc.compiler.export import export_onnx

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("blocked") / "mixed.onnx"
    export_onnx(_MixedNet().eval(), (1, 3, 33, 33), path)
    return _with_dropout_after_concat(path)


def _with_dropout_after_concat(path: Path) -> Path:
    """torch drops Dropout from eval-mode exports; squeezenet keeps one, so put one in by hand."""
    model = onnx.load(path)
    graph = model.graph
    concat = next(n for n in graph.node if n.op_type == "Concat")
    dropped = concat.output[0] + "_dropout"
    for node in graph.node:
        node.input[:] = [dropped if name == concat.output[0] else name for name in node.input]
    position = list(graph.node).index(concat) + 1
    graph.node.insert(position, onnx.helper.make_node("Dropout", [concat.output[0]], [dropped]))
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path


def test_blocked_network_matches_onnxruntime(mixed_onnx: Path) -> None:
    import onnxruntime as ort
    import tvm
    from tvm import relax

    from nasc.compiler.build import compile_module, lower_for_tuning
    from nasc.compiler.frontend import import_onnx
    from nasc.compiler.runtime import run_vm

    device = resolve_device("local")
    model = onnx.load(mixed_onnx)
    mod = import_onnx(model)
    lowered = lower_for_tuning(mod, tvm_target(device))
    names = [gv.name_hint for gv in lowered.functions]
    convs = sum(1 for node in model.graph.node if node.op_type == "Conv")
    blocked = [n for n in names if "conv2d_nchwc" in n]
    assert len(blocked) == convs - 1, names  # all but the grouped convolution
    assert any("max_pool2d" in n for n in names), names
    assert not any("dropout" in n for n in names), names  # an identity at inference, passed through blocked

    executable, _ = compile_module(mod, device)
    x = np.random.default_rng(1).standard_normal((1, 3, 33, 33)).astype("float32")
    got = run_vm(relax.VirtualMachine(executable, tvm.cpu()), [x], tvm.cpu())[0]
    want = ort.InferenceSession(str(mixed_onnx), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_channel_block_follows_the_target_vector_width() -> None:
    import tvm

    assert channel_block(tvm_target(resolve_device("local"))) == 16  # AVX-512
    assert channel_block(tvm_target(resolve_device("rpi4"))) == 4  # NEON
    assert channel_block(tvm.target.Target("nvidia/jetson-nano")) == 0  # CUDA: the pass is off


def test_block_for_picks_the_largest_dividing_block() -> None:
    assert [block_for(c, 16) for c in (64, 24, 12, 1000, 3, 10)] == [16, 8, 4, 8, 0, 0]
    assert block_for(64, 4) == 4


def test_kernels_and_constants_are_blocked_elementwise() -> None:
    dense = np.arange(32 * 24 * 3 * 3, dtype="float32").reshape(32, 24, 3, 3)
    blocked = block_dense_kernel(dense, in_block=8, out_block=16)
    assert blocked.shape == (2, 3, 3, 3, 8, 16)
    assert blocked[1, 2, 0, 2, 5, 7] == dense[16 + 7, 16 + 5, 0, 2]

    depthwise = np.arange(24 * 1 * 5 * 5, dtype="float32").reshape(24, 1, 5, 5)
    blocked_dw = block_depthwise_kernel(depthwise, 8)
    assert blocked_dw.shape == (3, 5, 5, 8)
    assert blocked_dw[2, 4, 1, 3] == depthwise[16 + 3, 0, 4, 1]

    bias = np.arange(24, dtype="float32").reshape(1, 24, 1, 1)
    blocked_bias = block_channel_constant(bias, 24, 8)
    assert blocked_bias.shape == (1, 3, 1, 1, 8)
    assert blocked_bias[0, 1, 0, 0, 6] == 14
    assert block_channel_constant(bias.reshape(24, 1, 1), 24, 8).shape == (1, 3, 1, 1, 8)
    assert block_channel_constant(np.float32(2.0).reshape(1, 1, 1, 1), 24, 8).shape == ()
    assert block_channel_constant(np.zeros((1, 24, 4, 4), "float32"), 24, 8) is None  # varies in space

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
    choose_block,
)
from nasc.compiler.target import tvm_target
from nasc.devices.registry import resolve_device


class _MixedNet(nn.Module):
    """Every case the pass handles, and one it must leave alone (10 output channels: no block fits)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)  # fewer input channels than a block
        self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.project = nn.Conv2d(16, 16, 1)
        self.expand = nn.Conv2d(16, 26, 1)  # 26 channels: padded to 32 (blocks of 8 or 16)
        self.depthwise_s2 = nn.Conv2d(26, 26, 5, stride=2, padding=2, groups=26)
        self.branch_a = nn.Conv2d(26, 16, 1)
        self.branch_b = nn.Conv2d(26, 16, 3, padding=1)
        self.grouped = nn.Conv2d(32, 16, 3, padding=1, groups=2)  # 16 in, 8 out per group: whole blocks
        self.classifier = nn.Conv2d(16, 42, 1)  # 42 channels: padded to 48
        self.narrow = nn.Conv2d(42, 10, 1)  # 10 channels: no block fits, stays NCHW
        self.scale = nn.Parameter(torch.linspace(0.5, 2.0, 42).reshape(1, 42, 1, 1), requires_grad=False)
        self.head = nn.Linear(52, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.clamp(self.stem(x), 0.0, 6.0)
        x = x + self.project(torch.relu(self.depthwise(x)))  # residual add of two blocked tensors
        x = torch.clamp(self.depthwise_s2(torch.clamp(self.expand(x), 0.0, 6.0)), 0.0, 6.0)
        x = torch.cat([torch.relu(self.branch_a(x)), torch.relu(self.branch_b(x))], dim=1)
        x = nn.functional.max_pool2d(x, 3, stride=2)
        x = torch.relu(self.grouped(x))
        x = torch.relu(self.classifier(x)) / self.scale  # element-wise ops on padded lanes, a divisor padded with 1
        pooled = torch.cat([x.mean(dim=(2, 3), keepdim=True), self.narrow(x).mean(dim=(2, 3), keepdim=True)], dim=1)
        return self.head(pooled.flatten(1))


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
    assert len(blocked) == convs - 1, names  # all but the 10-channel one
    assert any("group_conv2d_nchwc" in n for n in names), names
    assert any("strided_slice" in n for n in names), names  # padded channels sliced off for NCHW
    assert any("max_pool2d" in n for n in names), names
    assert not any("dropout" in n for n in names), names  # an identity at inference, passed through blocked

    executable, _ = compile_module(mod, device)
    x = np.random.default_rng(1).standard_normal((1, 3, 33, 33)).astype("float32")
    got = run_vm(relax.VirtualMachine(executable, tvm.cpu()), [x], tvm.cpu())[0]
    want = ort.InferenceSession(str(mixed_onnx), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("mcpu", "triple", "floats"), [
    ("znver4", "x86_64", 16), ("skylake-avx512", "x86_64", 16),  # AVX-512
    ("znver3", "x86_64", 8), ("haswell", "x86_64", 8),  # AVX2 only: TVM's own vector width says 512 bits
    ("x86-64", "x86_64", 4),  # SSE2
    ("cortex-a72", "aarch64", 4),  # NEON
])
def test_channel_block_follows_the_cpus_vector_isa(mcpu: str, triple: str, floats: int) -> None:
    import tvm

    target = tvm.target.Target({"kind": "llvm", "mcpu": mcpu, "mtriple": f"{triple}-linux-gnu"})
    assert channel_block(target) == floats


def test_channel_block_of_the_devices() -> None:
    import tvm
    from tvm.target import codegen

    local = tvm_target(resolve_device("local"))
    assert channel_block(local) == (16 if "avx512f" in set(codegen.llvm_get_cpu_features(local)) else 8)
    assert channel_block(tvm_target(resolve_device("rpi4"))) == 4  # NEON
    assert channel_block(tvm.target.Target("nvidia/jetson-nano")) == 0  # CUDA: the pass is off


def test_block_for_picks_the_largest_dividing_block() -> None:
    assert [block_for(c, 16) for c in (64, 24, 12, 1000, 3, 10)] == [16, 8, 4, 8, 0, 0]
    assert block_for(64, 4) == 4


def test_choose_block_pads_to_the_full_width_when_that_wastes_at_most_a_third() -> None:
    assert [choose_block(c, 16) for c in (64, 24, 12, 1000, 40, 8, 3, 10)] == [16, 16, 16, 16, 16, 8, 0, 0]
    assert choose_block(6, 4) == 4 and choose_block(2, 4) == 0


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


def test_padded_channels_get_zero_weights_and_the_constant_fill() -> None:
    dense = np.arange(1, 1 + 40 * 24, dtype="float32").reshape(40, 24, 1, 1)
    blocked = block_dense_kernel(dense, in_block=16, out_block=16)
    assert blocked.shape == (3, 2, 1, 1, 16, 16)
    assert blocked[2, 1, 0, 0, 7, 7] == dense[39, 23, 0, 0]
    assert not blocked[2, :, :, :, :, 8:].any() and not blocked[:, 1, :, :, 8:, :].any()
    assert np.count_nonzero(blocked) == dense.size

    depthwise = np.ones((24, 1, 3, 3), "float32")
    blocked_dw = block_depthwise_kernel(depthwise, 16)
    assert blocked_dw.shape == (2, 3, 3, 16) and not blocked_dw[1, :, :, 8:].any()

    scale = np.full((1, 40, 1, 1), 2.0, "float32")
    blocked_scale = block_channel_constant(scale, 40, 16, fill=1.0)
    assert blocked_scale.shape == (1, 3, 1, 1, 16)
    assert (blocked_scale[0, 2, 0, 0, 8:] == 1.0).all() and (blocked_scale[0, 2, 0, 0, :8] == 2.0).all()


class _ShuffleSqueezeNet(nn.Module):
    """ShuffleNetV2's split, padded branches, concat and shuffle; a squeeze-excitation whose reduced
    channels (6) no block divides; its per-channel scale broadcast over the map; a grouped convolution
    of 4 channels per group, whose input is re-blocked to blocks of 4 by a gather."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 26, 3, padding=1)  # 26 channels, padded; halves of 13, padded too
        self.left = nn.Conv2d(13, 13, 1)
        self.right = nn.Conv2d(13, 13, 3, padding=1)
        self.reduce = nn.Conv2d(26, 6, 1)
        self.expand = nn.Conv2d(6, 26, 1)
        self.head = nn.Conv2d(26, 24, 1)
        self.grouped = nn.Conv2d(24, 24, 3, padding=1, groups=6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from nasc.compiler.standard_nets import channel_shuffle

        left, right = torch.relu(self.stem(x)).chunk(2, dim=1)
        x = channel_shuffle(torch.cat([torch.relu(self.left(left)), torch.relu(self.right(right))], dim=1), 2)
        scale = torch.sigmoid(self.expand(nn.functional.silu(self.reduce(x.mean(dim=(2, 3), keepdim=True)))))
        return self.grouped(torch.relu(self.head(x * scale)))


def test_channel_gathers_and_channel_broadcasts_stay_blocked_and_match_onnxruntime(tmp_path: Path) -> None:
    import onnxruntime as ort
    import tvm
    from tvm import relax

    from nasc.compiler.build import compile_module, kernel_counts, lower_and_apply
    from nasc.compiler.export import export_onnx
    from nasc.compiler.frontend import import_onnx
    from nasc.compiler.runtime import run_vm

    torch.manual_seed(0)
    path = tmp_path / "shuffle.onnx"
    export_onnx(_ShuffleSqueezeNet().eval(), (1, 3, 12, 12), path)
    device = resolve_device("local")
    mod = import_onnx(onnx.load(path))
    lowered, _ = lower_and_apply(mod, device)
    names = [gv.name_hint for gv in lowered.functions]
    assert any("gather_channels_nchwc" in n for n in names), names
    assert any("group_conv2d_nchwc" in n for n in names), names
    assert kernel_counts(lowered).layout_transform_calls == 1, names  # the output back to NCHW only

    executable, _ = compile_module(mod, device)
    x = np.random.default_rng(2).standard_normal((1, 3, 12, 12)).astype("float32")
    got = run_vm(relax.VirtualMachine(executable, tvm.cpu()), [x], tvm.cpu())[0]
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_a_single_position_tensor_takes_the_full_block_and_channel_vectors_broadcast() -> None:
    from nasc.compiler.blocked_layout import _broadcasts_per_channel

    assert choose_block(6, 16) == 0 and choose_block(6, 16, positions=1) == 16
    assert choose_block(10, 8, positions=4) == 0 and choose_block(10, 8, positions=1) == 8
    assert _broadcasts_per_channel((1, 24, 1, 1), (1, 24, 7, 7))
    assert not _broadcasts_per_channel((1, 1, 7, 7), (1, 24, 7, 7))  # varies in space, not per channel
    assert not _broadcasts_per_channel((1, 12, 1, 1), (1, 24, 7, 7))

"""Concatenations fused into the pool that reads them: one kernel fewer each, same numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nasc.compiler.target import tvm_target
from nasc.devices.registry import resolve_device


class _FireNet(nn.Module):
    """Squeezenet-style joins: two read by a pool (fused: a lone pool, a pool fused with an element-wise op),
    one read by a convolution and one read twice (left alone)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.expand_a = nn.Conv2d(16, 16, 1)
        self.expand_b = nn.Conv2d(16, 16, 3, padding=1)
        self.squeeze = nn.Conv2d(32, 16, 1)
        self.expand_c = nn.Conv2d(16, 16, 1)
        self.expand_d = nn.Conv2d(16, 16, 3, padding=1)
        self.branch_e = nn.Conv2d(32, 16, 1)
        self.branch_f = nn.Conv2d(32, 16, 1)
        self.branch_g = nn.Conv2d(32, 16, 1)
        self.branch_h = nn.Conv2d(32, 16, 3, padding=1)
        self.head = nn.Conv2d(32, 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        joined = torch.cat([torch.relu(self.expand_a(x)), torch.relu(self.expand_b(x))], dim=1)
        x = torch.relu(self.squeeze(joined))  # read by a convolution: left alone
        pooled = nn.functional.max_pool2d(
            torch.cat([torch.relu(self.expand_c(x)), torch.relu(self.expand_d(x))], dim=1), 2)  # fused into the pool
        twice = torch.cat([torch.relu(self.branch_e(pooled)), torch.relu(self.branch_f(pooled))], dim=1)
        shifted = nn.functional.max_pool2d(
            torch.cat([torch.relu(self.branch_g(pooled)), torch.relu(self.branch_h(pooled))], dim=1), 2) - 0.25
        return self.head(nn.functional.max_pool2d(twice, 2) + nn.functional.avg_pool2d(twice, 2) + shifted)


@pytest.fixture(scope="module")
def fire_onnx(tmp_path_factory) -> Path:
    from nasc.compiler.export import export_onnx

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("concat") / "fire.onnx"
    export_onnx(_FireNet().eval(), (1, 3, 20, 20), path)
    return path


def test_concatenations_read_once_by_a_pool_are_fused_and_the_numbers_match(fire_onnx: Path) -> None:
    import onnx
    import onnxruntime as ort
    import tvm
    from tvm import relax

    from nasc.compiler.build import compile_module, lower_for_tuning
    from nasc.compiler.frontend import import_onnx
    from nasc.compiler.runtime import run_vm

    device = resolve_device("local")
    mod = import_onnx(onnx.load(fire_onnx))
    lowered = lower_for_tuning(mod, tvm_target(device))
    main = lowered["main"].script()
    fused = [gv.name_hint for gv in lowered.functions if gv.name_hint.startswith("fused_concatenate")]
    assert len(fused) == 2 and all("max_pool2d" in name for name in fused), fused  # the two pools'
    assert any("subtract" in name for name in fused), fused  # one of them fused with the subtraction
    assert main.count("R.call_tir(concatenate") == 2, main  # the convolution's and the one read twice
    for name in fused:  # computed inline in the pool's loads
        assert 'sblock("T_concat' not in lowered[name].script(), name

    executable, _ = compile_module(mod, device)
    x = np.random.default_rng(3).standard_normal((1, 3, 20, 20)).astype("float32")
    got = run_vm(relax.VirtualMachine(executable, tvm.cpu()), [x], tvm.cpu())[0]
    want = ort.InferenceSession(str(fire_onnx), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_a_module_without_concatenations_is_left_as_it_was(tmp_path: Path) -> None:
    import onnx
    import tvm
    from tvm.relax import transform

    from nasc.compiler.concat_fusion import fuse_concat_into_pools
    from nasc.compiler.export import export_onnx
    from nasc.compiler.frontend import import_onnx

    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.MaxPool2d(2)).eval()
    mod = import_onnx(onnx.load(export_onnx(net, (1, 3, 12, 12), tmp_path / "plain.onnx").onnx_path))
    with tvm_target(resolve_device("local")):
        mod = transform.FuseOps()(transform.AnnotateTIROpPattern()(transform.LegalizeOps()(mod)))
        after = fuse_concat_into_pools()(mod)
    tvm.ir.assert_structural_equal(after, mod)

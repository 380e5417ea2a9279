"""Strided convolutions on a polyphase input: same numbers as torch, and only strided NCHW ones change."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nasc.compiler.strided_conv import legalize_strided_conv2d, polyphase_conv2d_nchw


def _run_polyphase(x: np.ndarray, w: np.ndarray, strides, padding, groups: int) -> np.ndarray:
    import tvm
    from tvm import te

    data = te.placeholder(x.shape, "float32", "data")
    kernel = te.placeholder(w.shape, "float32", "kernel")
    out = polyphase_conv2d_nchw(data, kernel, strides, padding, groups, "float32")
    func = te.create_prim_func([data, kernel, out]).with_attr("global_symbol", "main")
    lib = tvm.compile(tvm.IRModule({"main": func}), target="llvm")
    dev = tvm.cpu()
    result = tvm.runtime.tensor(np.zeros([int(d) for d in out.shape], "float32"), dev)
    lib(tvm.runtime.tensor(x, dev), tvm.runtime.tensor(w, dev), result)
    return result.numpy()


@pytest.mark.parametrize(
    ("channels", "out_channels", "size", "kernel", "strides", "padding", "groups"),
    [
        (8, 8, 12, 3, (2, 2), (1, 1, 1, 1), 8),  # depthwise 3x3, stride 2
        (6, 6, 13, 5, (2, 2), (2, 2, 2, 2), 6),  # depthwise 5x5, odd input
        (4, 4, 14, 7, (2, 2), (3, 3, 3, 3), 4),  # depthwise 7x7
        (3, 5, 11, 3, (2, 2), (1, 1, 1, 1), 1),  # dense stem-like
        (4, 6, 10, 3, (2, 1), (0, 2, 1, 1), 2),  # grouped, mixed strides, asymmetric padding
        (4, 4, 9, 1, (3, 3), (0, 0, 0, 0), 1),  # 1x1, stride 3
    ],
)
def test_polyphase_convolution_matches_torch(channels, out_channels, size, kernel, strides, padding, groups) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, channels, size, size)).astype("float32")
    w = rng.standard_normal((out_channels, channels // groups, kernel, kernel)).astype("float32")
    top, left, bottom, right = padding
    padded = torch.nn.functional.pad(torch.from_numpy(x), (left, right, top, bottom))
    want = torch.nn.functional.conv2d(padded, torch.from_numpy(w), stride=strides, groups=groups).numpy()
    got = _run_polyphase(x, w, strides, padding, groups)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _legalized_scripts(strides, data_layout="NCHW") -> list[str]:
    import tvm
    from tvm import relax

    shape = (1, 4, 8, 8) if data_layout == "NCHW" else (1, 8, 8, 4)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    w = relax.Var("w", relax.TensorType((4, 1, 3, 3) if data_layout == "NCHW" else (4, 3, 3, 1), "float32"))
    with bb.function("main", [x, w]):
        y = bb.emit(relax.op.nn.conv2d(x, w, strides=strides, padding=1, groups=4, data_layout=data_layout,
                                       kernel_layout="OIHW" if data_layout == "NCHW" else "OHWI"))
        bb.emit_func_output(y)
    mod = relax.transform.LegalizeOps(customize_legalize_map={"relax.nn.conv2d": legalize_strided_conv2d})(bb.get())
    return [func.script() for func in mod.functions.values() if isinstance(func, tvm.tirx.PrimFunc)]


def test_only_strided_nchw_convolutions_take_the_polyphase_path() -> None:
    for strides, layout, polyphase in [((2, 2), "NCHW", True), ((1, 1), "NCHW", False), ((2, 2), "NHWC", False)]:
        scripts = _legalized_scripts(strides, layout)
        assert len(scripts) == 1
        assert ("polyphase_pad" in scripts[0]) is polyphase, (strides, layout)

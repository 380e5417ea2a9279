"""Parity that knows float noise: a real onnxruntime reference on a wide-range model (no TVM).

The model's outputs reach ~1e6 beside values near 1e3 and below; a float64 evaluation of the same
float32 weights (a correct build with other rounding) must pass where plain allclose refused it,
while a wrong op or a wrong layout of the same values must still fail.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from nasc.compiler.settings import CompileSettings
from nasc.compiler.verify import OnnxReference, ParityReport, check_parity, onnxruntime_runner, random_inputs
from nasc.errors import ParityError
from nasc.tensors import TensorSpec

C, HW, OUT = 32, 8, 16
SPECS_IN = (TensorSpec("x", (1, 1, HW, HW), "float32"),)
SPECS_OUT = (TensorSpec("y", (1, OUT, HW, HW), "float32"),)
SETTINGS = CompileSettings()


class WideRangeNet:
    """Conv 3x3 (1 -> 32, weights ~3e4) -> BatchNorm -> Conv 1x1 (32 -> 16) -> Relu, as ONNX and in float64.

    Channels 0..7 reach ~1e6. Channels 8..15 weigh the hidden channels by ~1 along a direction the
    first conv and BatchNorm cannot produce, so ~1e6 terms cancel to ~1e3: their float32 rounding is
    large next to their own value. onnxruntime folds BatchNorm into the conv only with optimisations
    on, so its two sessions differ by float noise.
    """

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.w1 = (rng.standard_normal((C, 1, 3, 3)) * 3e4).astype(np.float32)
        self.gamma = rng.uniform(0.5, 2, C).astype(np.float32)
        self.beta = (rng.standard_normal(C) * 1e4).astype(np.float32)
        self.mean = (rng.standard_normal(C) * 1e3).astype(np.float32)
        self.var = rng.uniform(0.5, 2, C).astype(np.float32)
        a = self.gamma.astype(np.float64) / np.sqrt(self.var.astype(np.float64) + 1e-5)
        shift = self.beta - a * self.mean
        span, _ = np.linalg.qr(np.concatenate([a[:, None] * self.w1.reshape(C, 9), shift[:, None]], axis=1))
        w2 = np.zeros((OUT, C))
        for j in range(OUT):
            if j < OUT // 2:
                w2[j] = rng.standard_normal(C) * 3 / np.sqrt(C)
            else:
                v = rng.standard_normal(C)
                v -= span @ (span.T @ v)
                w2[j] = 3 * v / np.linalg.norm(v) + rng.standard_normal(C) * 1e-3
        self.w2 = w2.astype(np.float32).reshape(OUT, C, 1, 1)

    def onnx(self, path: Path, relu: bool = True) -> Path:
        inits = {"w1": self.w1, "gamma": self.gamma, "beta": self.beta, "mean": self.mean, "var": self.var,
                 "w2": self.w2}
        nodes = [
            helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
            helper.make_node("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["bn"]),
            helper.make_node("Conv", ["bn", "w2"], ["c2" if relu else "y"]),
        ]
        if relu:
            nodes.append(helper.make_node("Relu", ["c2"], ["y"]))
        graph = helper.make_graph(
            nodes, "wide", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, HW, HW])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, OUT, HW, HW])],
            [numpy_helper.from_array(v, k) for k, v in inits.items()],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, path)
        return path

    def float64(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """The exact result of the float32 weights, rounded once to float32: a correct build."""
        x = np.pad(inputs[0].astype(np.float64)[0, 0], 1)
        patches = np.stack([x[i:i + HW, j:j + HW] for i in range(3) for j in range(3)])
        c1 = np.einsum("ck,khw->chw", self.w1.reshape(C, 9).astype(np.float64), patches)
        scale = self.gamma.astype(np.float64) / np.sqrt(self.var.astype(np.float64) + 1e-5)
        bn = (c1 - self.mean[:, None, None]) * scale[:, None, None] + self.beta[:, None, None]
        y = np.einsum("oc,chw->ohw", self.w2.reshape(OUT, C).astype(np.float64), bn)
        return [np.maximum(y, 0)[None].astype(np.float32)]


@pytest.fixture(scope="module")
def net() -> WideRangeNet:
    return WideRangeNet()


@pytest.fixture(scope="module")
def reference(net: WideRangeNet, tmp_path_factory: pytest.TempPathFactory) -> OnnxReference:
    return onnxruntime_runner(net.onnx(tmp_path_factory.mktemp("wide") / "wide.onnx"), SPECS_IN)


def _check(artifact, reference, settings: CompileSettings = SETTINGS) -> ParityReport:
    return check_parity(
        artifact, reference, SPECS_IN, SPECS_OUT, samples=settings.verify_samples, atol=settings.atol,
        rtol=settings.rtol, noise_factor=settings.noise_factor, scale_rtol=settings.scale_rtol,
        seed=settings.seed, where="test",
    )


def test_float_noise_on_a_wide_range_output_passes_where_allclose_refused(
        net: WideRangeNet, reference: OnnxReference) -> None:
    old_refused = False
    for sample in range(SETTINGS.verify_samples):
        inputs = random_inputs(SPECS_IN, SETTINGS.seed + sample)
        (want,), (got,), (unopt,) = reference(inputs), net.float64(inputs), reference.unoptimised(inputs)
        assert np.abs(want).max() > 3e5 and 3e2 < np.abs(want[:, OUT // 2:]).max() < 1e4  # wide range
        assert np.abs(want - unopt).max() > 0  # onnxruntime differs from itself
        old_refused |= not np.allclose(got, want, atol=SETTINGS.atol, rtol=SETTINGS.rtol)
    assert old_refused, "the old atol/rtol check should refuse this correct float64 build"

    report = _check(net.float64, reference)
    print(f"\nwide-range parity: {report.to_dict()}")
    assert report.passed and report.worst_output == "y"
    assert report.output_scale is not None and report.output_scale > 3e5
    assert report.reference_noise is not None and report.reference_noise > 0
    assert report.reference_noise_rel == pytest.approx(report.reference_noise / report.output_scale)
    assert report.tolerance_abs == pytest.approx(max(
        SETTINGS.atol, SETTINGS.noise_factor * report.reference_noise, SETTINGS.scale_rtol * report.output_scale))
    assert report.max_err_rel_scale is not None and 0 < report.max_err_rel_scale < SETTINGS.scale_rtol
    assert report.worst_err_over_tol is not None and report.worst_err_over_tol <= 1
    assert report.max_rel_err is not None and report.max_rel_err > SETTINGS.rtol  # what the old check saw
    assert ParityReport.from_dict(report.to_dict()) == report

    # With the noise and scale terms off, the rule is the old one again and refuses; the fix it names is a knob.
    with pytest.raises(ParityError) as info:
        _check(net.float64, reference, CompileSettings(noise_factor=0.0, scale_rtol=0.0))
    assert "raise [compile].scale_rtol (now 0;" in str(info.value)


def test_missing_relu_is_refused(net: WideRangeNet, reference: OnnxReference, tmp_path: Path) -> None:
    no_relu = onnxruntime_runner(net.onnx(tmp_path / "no_relu.onnx", relu=False), SPECS_IN)
    with pytest.raises(ParityError) as info:
        _check(no_relu, reference)
    message = str(info.value)
    assert "output 'y'" in message and "noise" in message and "tolerance" in message
    assert "of its scale" in message and "far beyond float rounding" in message and "--trials 0" in message


def test_sign_flip_of_one_channel_is_refused(net: WideRangeNet, reference: OnnxReference) -> None:
    def flipped(inputs: list[np.ndarray]) -> list[np.ndarray]:
        (y,) = net.float64(inputs)
        y = y.copy()
        y[:, 3] = -y[:, 3]
        return [y]

    with pytest.raises(ParityError, match="output 'y'"):
        _check(flipped, reference)


@pytest.mark.parametrize("layout", ["transposed", "channels permuted"])
def test_wrong_layout_of_the_same_values_is_refused(net: WideRangeNet, reference: OnnxReference, layout: str) -> None:
    def wrong(inputs: list[np.ndarray]) -> list[np.ndarray]:
        (y,) = net.float64(inputs)
        if layout == "transposed":
            return [np.ascontiguousarray(y.transpose(0, 1, 3, 2))]  # H and W swapped: same shape, same values
        return [np.ascontiguousarray(np.roll(y, 1, axis=1))]

    with pytest.raises(ParityError) as info:
        _check(wrong, reference)
    print(f"\n{layout}: {info.value}")
    assert "x its tolerance" in str(info.value)


def test_plain_runner_has_no_noise_and_old_reports_still_load(tmp_path: Path) -> None:
    specs_in, specs_out = (TensorSpec("x", (2, 3), "float32"),), (TensorSpec("y", (2, 3), "float32"),)
    report = check_parity(lambda xs: [xs[0] * 2.0], lambda xs: [xs[0] * 2.0], specs_in, specs_out, samples=1,
                          atol=1e-4, rtol=1e-3, seed=0, where="t")
    assert report.passed and report.reference_noise == 0.0 and report.max_abs_err == 0.0

    old = {"checked": True, "where": "this host (in-process)", "samples": 3, "max_abs_err": 1e-6,
           "max_rel_err": 1e-5, "atol": 1e-4, "rtol": 1e-3, "passed": True, "worst_output": "y"}
    loaded = ParityReport.from_dict(old)
    assert loaded.output_scale is None and loaded.tolerance_abs is None and loaded.noise_factor == 0.0
    with pytest.raises(ValueError, match="unknown parity keys bogus"):
        ParityReport.from_dict({**old, "bogus": 1})
    with pytest.raises(TypeError):
        ParityReport.from_dict({"where": "x"})  # a required key missing is not filled in


def test_settings_refuse_negative_tolerances() -> None:
    for key in ("atol", "rtol", "noise_factor", "scale_rtol"):
        with pytest.raises(ValueError, match=key):
            CompileSettings(**{key: -1.0})

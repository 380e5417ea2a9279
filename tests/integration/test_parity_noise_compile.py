"""Parity that knows float noise, with real TVM builds: a correct large-scale conv net passes and its
compile.json holds the figures; a library checked against a model that differs by one op or by a
transposed weight (a real miscompile, as parity sees one) is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nasc.compiler.artifact import COMPILE_JSON, CompiledArtifact
from nasc.compiler.export import export_onnx
from nasc.compiler.runtime import host_runner
from nasc.compiler.settings import CompileSettings
from nasc.compiler.verify import check_parity, onnxruntime_runner
from nasc.devices.registry import resolve_device
from nasc.errors import InputError, ParityError
from nasc.pipeline.compile import compile_onnx

SHAPE = (1, 3, 16, 16)


class BigNet(nn.Module):
    """conv -> BatchNorm (randomised statistics) -> ReLU -> conv, outputs reaching ~1e5 (and every size
    below: the last conv has no ReLU, so its outputs cross zero)."""

    def __init__(self, relu: bool = True, transpose_last: bool = False) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 8, 3, padding=1)
        self.relu = relu
        with torch.no_grad():
            for p in (*self.conv1.parameters(), *self.conv2.parameters()):
                p.copy_(torch.randn(p.shape, generator=generator))
            self.conv1.weight.mul_(500.0)
            self.bn.running_mean.copy_(torch.randn(16, generator=generator) * 100)
            self.bn.running_var.copy_(torch.rand(16, generator=generator) + 0.5)
            self.bn.weight.copy_(torch.rand(16, generator=generator) + 0.5)
            self.bn.bias.copy_(torch.randn(16, generator=generator) * 100)
            if transpose_last:  # the same weights in the wrong layout (kh and kw swapped)
                self.conv2.weight.copy_(self.conv2.weight.transpose(2, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn(self.conv1(x))
        return self.conv2(torch.relu(h) if self.relu else h)


def _export(tmp: Path, name: str, **kwargs: bool) -> Path:
    return export_onnx(BigNet(**kwargs).eval(), SHAPE, tmp / f"{name}.onnx").onnx_path


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> CompiledArtifact:
    tmp = tmp_path_factory.mktemp("bignet")
    return compile_onnx(_export(tmp, "a"), resolve_device("local"), CompileSettings(trials=0), tmp / "art",
                        tmp / "cache")


def test_large_scale_net_passes_and_compile_json_holds_the_figures(compiled: CompiledArtifact) -> None:
    parity = compiled.parity
    print(f"\nlarge-scale conv net parity: {parity.to_dict()}")
    assert parity.checked and parity.passed and parity.worst_output == compiled.outputs[0].name
    assert parity.output_scale is not None and parity.output_scale > 3e4
    assert parity.reference_noise is not None and parity.reference_noise_rel is not None
    settings = CompileSettings()
    assert parity.noise_factor == settings.noise_factor and parity.scale_rtol == settings.scale_rtol
    assert parity.tolerance_abs == pytest.approx(max(
        settings.atol, settings.noise_factor * parity.reference_noise, settings.scale_rtol * parity.output_scale))
    assert parity.max_err_rel_scale is not None and parity.max_err_rel_scale < settings.scale_rtol
    assert parity.worst_err_over_tol is not None and parity.worst_err_over_tol <= 1

    record = json.loads((Path(compiled.directory) / COMPILE_JSON).read_text())["parity"]
    for key in ("reference_noise", "reference_noise_rel", "output_scale", "tolerance_abs", "max_err_rel_scale",
                "worst_err_over_tol", "noise_factor", "scale_rtol"):
        assert record[key] == getattr(parity, key), key
    assert CompiledArtifact.load(compiled.directory).parity == parity


def test_older_compile_json_loads_and_unknown_keys_are_refused(compiled: CompiledArtifact, tmp_path: Path) -> None:
    data = json.loads((Path(compiled.directory) / COMPILE_JSON).read_text())
    old = {k: data["parity"][k] for k in ("checked", "where", "samples", "max_abs_err", "max_rel_err", "atol",
                                           "rtol", "passed", "worst_output")}
    (tmp_path / COMPILE_JSON).write_text(json.dumps({**data, "parity": old}))
    loaded = CompiledArtifact.load(tmp_path)
    assert loaded.parity.passed and loaded.parity.output_scale is None
    (tmp_path / COMPILE_JSON).write_text(json.dumps({**data, "parity": {**old, "max_abs_error": 1.0}}))
    with pytest.raises(InputError, match="unknown parity keys max_abs_error"):
        CompiledArtifact.load(tmp_path)


@pytest.mark.parametrize("change", ["relu", "transpose_last"])
def test_a_library_checked_against_another_model_is_refused(
        compiled: CompiledArtifact, tmp_path: Path, change: str) -> None:
    other = _export(tmp_path, change, **({"relu": False} if change == "relu" else {"transpose_last": True}))
    settings = CompileSettings()
    with pytest.raises(ParityError) as info:
        check_parity(
            host_runner(compiled.library_path), onnxruntime_runner(other, compiled.inputs), compiled.inputs,
            compiled.outputs, samples=settings.verify_samples, atol=settings.atol, rtol=settings.rtol,
            noise_factor=settings.noise_factor, scale_rtol=settings.scale_rtol, seed=settings.seed, where="test",
        )
    message = str(info.value)
    print(f"\n{change}: {message}")
    assert f"output '{compiled.outputs[0].name}'" in message and "noise" in message and "tolerance" in message


def test_cli_parity_row_shows_noise_and_tolerance(compiled: CompiledArtifact, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nasc", "compile", str(compiled.onnx_path), "--device", "local", "--trials", "0",
         "-o", str(tmp_path / "cli")], cwd=tmp_path, capture_output=True, text=True, timeout=900,
        env={**os.environ, "COLUMNS": "250"})
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.strip("│ ").startswith("parity"))
    print(f"\n{row.strip()}")
    assert "max abs err" in row and "of scale" in row and "noise" in row and "tolerance" in row
    assert np.isfinite(CompiledArtifact.load(tmp_path / "cli").parity.tolerance_abs or np.nan)

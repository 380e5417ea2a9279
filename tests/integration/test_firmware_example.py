"""The bundle's C++ example builds against the apache-tvm wheel's runtime, runs, and prints the expected output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from firmware_testlib import tiny_onnx_model, two_in_two_out_onnx_model

from nasc.firmware_bridge.bundle import extract_bundle
from nasc.pipeline.config import Config
from nasc.pipeline.package import package

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MADE_HERE = {"tiny": tiny_onnx_model, "two-in-two-out": two_in_two_out_onnx_model}


def _compiled(root: Path, model: str) -> Path:
    """A real compile output folder for the host CPU, made by nasc's own compile_onnx."""
    from nasc.pipeline.compile import compile_onnx

    if model in MADE_HERE:
        source = root / f"{model}.onnx"
        onnx.save(MADE_HERE[model](), source)
    else:
        source = EXAMPLES / f"{model}.onnx"
    config = Config()
    out = root / f"{model}-local"
    compile_onnx(source, config.device("local"), config.compile, out, config.cache_dir())
    return out


@pytest.fixture(scope="module", params=["tiny", "mbconv-32", "two-in-two-out"])
def unpacked(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp(f"example-{request.param}")
    folder = _compiled(root, request.param)
    bundle = Path(package(folder, root / "model-local.tar.gz").bundle)
    dest = root / "unpacked"
    extract_bundle(bundle, dest)
    assert shutil.which("make") and shutil.which("g++"), "needs make and g++: apt-get install -y make g++"
    built = subprocess.run(["make", "-C", "example", f"PYTHON={sys.executable}"], cwd=dest, capture_output=True,
                           text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    return dest


def _printed_outputs(stdout: str) -> list[np.ndarray]:
    return [np.array([float(v) for v in line.split()[1:]], dtype=np.float64)
            for line in stdout.splitlines() if line.startswith("values")]


def test_example_prints_the_expected_output(unpacked: Path) -> None:
    ran = subprocess.run([str(unpacked / "example" / "run_model"), "."], cwd=unpacked, capture_output=True, text=True,
                         timeout=60)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    manifest = json.loads((unpacked / "manifest.json").read_text())
    printed = _printed_outputs(ran.stdout)
    assert len(printed) == len(manifest["outputs"]) == len(manifest["sample"]["expected_outputs"])
    for index, (values, spec, path) in enumerate(zip(printed, manifest["outputs"],
                                                     manifest["sample"]["expected_outputs"], strict=True)):
        expected = np.load(unpacked / path)
        assert values.shape == (expected.size,)
        np.testing.assert_allclose(values, expected.ravel(), rtol=1e-4, atol=1e-4)
        shape = "x".join(str(d) for d in spec["shape"]) or "scalar"
        assert f'output {index} "{spec["name"]}" {shape}' in ran.stdout
    assert float(np.std(np.concatenate(printed))) > 0.1  # real, input-dependent values, not a constant
    assert ran.stdout.rstrip().endswith("PASS")


def test_example_reports_a_wrong_expected_output(unpacked: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(unpacked, copy)
    expected = np.load(copy / "sample" / "expected-output-0.npy")
    np.save(copy / "sample" / "expected-output-0.npy", expected + 1.0)
    ran = subprocess.run([str(copy / "example" / "run_model"), str(copy)], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "MISMATCH" in ran.stdout and ran.stdout.rstrip().endswith("FAIL")


def test_example_reports_a_missing_library(unpacked: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(unpacked, copy)
    (copy / "model.so").write_bytes(b"not a library")
    ran = subprocess.run([str(copy / "example" / "run_model"), str(copy)], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 2 and "run_model:" in ran.stderr

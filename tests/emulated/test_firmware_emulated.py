"""A bundle for the Raspberry Pi, checked on the emulated board: the C++ example, cross-compiled as
example/README.md says, runs the aarch64 model.so under qemu-user with the aarch64 TVM runtime of the
board's root file system and prints the expected output.

Needs root and the apt packages debootstrap qemu-user-static binfmt-support g++-aarch64-linux-gnu;
NASC_TEST_CACHE_DIR keeps the root file system between runs (the first run builds it, minutes).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from firmware_testlib import tiny_onnx_model

from nasc.devices.emulated import ensure_rootfs
from nasc.devices.emulated.rootfs import chroot_env
from nasc.devices.registry import resolve_device
from nasc.firmware_bridge.bundle import extract_bundle
from nasc.pipeline.compile import compile_onnx
from nasc.pipeline.config import Config
from nasc.pipeline.package import package

DEVICE = resolve_device("rpi4-emulated")
SITE = "usr/local/lib/python3.11/dist-packages"  # where the root file system's TVM wheels live


@pytest.fixture(scope="module")
def rootfs() -> Path:
    return ensure_rootfs("rpi4", Path(os.environ["NASC_CACHE_DIR"]))


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rpi4-bundle")
    onnx.save(tiny_onnx_model(seed=2), root / "tiny.onnx")
    config = Config()
    # The example itself is the check against onnxruntime here, so compile's own (RPC) check is skipped.
    compile_onnx(root / "tiny.onnx", DEVICE, config.compile, root / "compiled", config.cache_dir(), verify=False)
    bundle = Path(package(root / "compiled", root / "model-rpi4-emulated.tar.gz").bundle)
    dest = root / "unpacked"
    extract_bundle(bundle, dest)
    return dest


def test_cross_built_example_runs_on_the_emulated_board(rootfs: Path, bundle_dir: Path) -> None:
    cross = shutil.which(DEVICE.cross_compiler or "")
    assert cross, "needs the aarch64 cross compiler: apt-get install -y g++-aarch64-linux-gnu"
    # The headers are the same for every architecture: the host wheels'; the libraries: the board's.
    tvm_dir = Path(importlib.util.find_spec("tvm").origin).parent  # type: ignore[union-attr, arg-type]
    ffi_dir = Path(importlib.util.find_spec("tvm_ffi").origin).parent  # type: ignore[union-attr, arg-type]
    board_libs = [rootfs / SITE / "tvm" / "lib", rootfs / SITE / "tvm_ffi" / "lib"]
    built = subprocess.run(
        ["make", "-C", "example", f"CXX={cross}", f"TVM_INCLUDE_DIRS={tvm_dir / 'include'} {ffi_dir / 'include'}",
         f"TVM_LIB_DIRS={' '.join(map(str, board_libs))}"],
        cwd=bundle_dir, capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    header = (bundle_dir / "model_info.h").read_text()
    assert '#define NASC_TARGET_TRIPLE "aarch64-linux-gnu"' in header
    inside = Path(tempfile.mkdtemp(prefix="nasc-firmware-test-", dir=rootfs / "tmp"))
    try:
        shutil.copytree(bundle_dir, inside, dirs_exist_ok=True)
        where = "/" + str(inside.relative_to(rootfs))
        env = {**chroot_env(), "LD_LIBRARY_PATH": f"/{SITE}/tvm/lib:/{SITE}/tvm_ffi/lib"}
        ran = subprocess.run(["chroot", str(rootfs), f"{where}/example/run_model", where], capture_output=True,
                             text=True, env=env, timeout=300)
    finally:
        shutil.rmtree(inside, ignore_errors=True)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    values = [line for line in ran.stdout.splitlines() if line.startswith("values ")]
    printed = np.array([float(v) for v in values[0].split()[1:]])
    expected = np.load(bundle_dir / "sample" / "expected-output-0.npy").ravel()
    np.testing.assert_allclose(printed, expected, rtol=1e-4, atol=1e-4)
    assert ran.stdout.rstrip().endswith("PASS")

"""`nasc search-and-compile --device rpi4-emulated` with tiny budgets: the whole job against the emulated
Raspberry Pi, ending with an aarch64 bundle whose sample output the emulated board reproduces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from tiny_project import tiny_project

from nasc.compiler.runtime import load_vm, run_vm
from nasc.devices.registry import resolve_device
from nasc.devices.rpc import open_session
from nasc.firmware_bridge.bundle import extract_bundle

NASC = [str(Path(sys.executable).parent / "nasc")]
MEASURE = "[measure]\nwarmup = 1\nnumber = 2\nrepeat = 5\n"


def test_search_and_compile_for_the_emulated_pi(tmp_path: Path) -> None:
    (tmp_path / "build.toml").write_text(tiny_project(latency_ms=5.0, final_epochs=2, extra=MEASURE))
    ran = subprocess.run([*NASC, "search-and-compile", "--device", "rpi4-emulated", "--trials", "0", "-o", "run",
                          "--json"], cwd=tmp_path, env={**os.environ, "COLUMNS": "200"}, capture_output=True,
                         text=True, timeout=1800)
    assert ran.returncode == 0, ran.stdout + ran.stderr[-4000:]
    summary = json.loads(ran.stdout)
    assert summary["device"] == "rpi4-emulated" and summary["emulated"] is True
    assert summary["parity_passed"] and "EMULATED" in summary["parity_where"]
    assert summary["measured_ms"] > 0
    unpacked = tmp_path / "unpacked"
    manifest = extract_bundle(tmp_path / summary["bundle"], unpacked).manifest
    assert manifest.target_triple.startswith("aarch64")
    assert manifest.latency is not None and manifest.latency.emulated
    device = resolve_device("rpi4-emulated")
    with open_session(device, Path(os.environ["NASC_CACHE_DIR"])) as session:
        vm = load_vm(session.load_library(unpacked / "model.so"), session.dev)
        got = run_vm(vm, [np.load(unpacked / "sample" / "input-0.npy")], session.dev)
    np.testing.assert_allclose(got[0], np.load(unpacked / "sample" / "expected-output-0.npy"), rtol=1e-4, atol=1e-4)

"""`nasc compile` for the emulated Raspberry Pi: cross-compiled, then verified over RPC under qemu."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_compile_verifies_on_emulated_pi_over_rpc(tmp_path: Path) -> None:
    out = tmp_path / "emu"
    result = subprocess.run(
        [sys.executable, "-m", "nasc", "compile", str(REPO / "examples" / "mbconv-32.onnx"),
         "--device", "rpi4-emulated", "-o", str(out)],
        capture_output=True, text=True, timeout=1800, env=dict(os.environ), cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((out / "compile.json").read_text())
    assert record["target_triple"] == "aarch64-linux-gnu"
    assert record["device"]["emulated"] is True
    parity = record["parity"]
    assert parity["checked"] and parity["passed"]
    assert "EMULATED" in parity["where"] and "127.0.0.1" in parity["where"]
    assert parity["max_abs_err"] < 1e-4
    assert "EMULATED" in result.stdout

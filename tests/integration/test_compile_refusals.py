"""`nasc compile` refuses, before any tuning, what it cannot finish: a board it cannot reach (naming
--no-verify, which builds without it) and an output folder it cannot write (naming the path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from nasc.devices.server import free_port
from nasc.errors import DeviceUnreachable, InputError

REPO = Path(__file__).resolve().parents[2]
NASC = [str(Path(sys.executable).parent / "nasc")]
MODEL = str(REPO / "examples" / "mbconv-32.onnx")


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NASC, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COLUMNS": "200"})


def test_an_unreachable_board_is_refused_before_tuning_and_no_verify_is_named(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "build.toml").write_text(
        f'[devices.board]\nbase = "local"\nconnection = "rpc://127.0.0.1:{port}"\n'
        "[measure]\nretries = 0\nconnect_timeout_s = 5\n")
    result = _run(tmp_path, "compile", MODEL, "--device", "board", "--trials", "4", "-o", "out")
    assert result.returncode == DeviceUnreachable.exit_code, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr and "--no-verify" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "compile.json").exists()


def test_an_output_folder_that_cannot_be_written_is_refused_first(tmp_path: Path) -> None:
    result = _run(tmp_path, "compile", MODEL, "--device", "local", "--trials", "8",
                           "-o", "/proc/nasc-cannot-write/out")
    assert result.returncode == InputError.exit_code, result.stderr
    assert "/proc/nasc-cannot-write/out" in result.stderr and "cannot be written" in result.stderr
    assert "Traceback" not in result.stderr
    assert "tune" not in result.stderr  # refused before tuning began

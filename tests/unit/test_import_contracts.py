"""The layers hold (scripts/lint-imports, as CI runs it), and a wrong-way import breaks them: a
function-local import from a room into the pipeline, tvm imported in search/, torch in firmware_bridge/."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOMS = ("nasc", "pipeline", "compiler", "search", "devices", "firmware_bridge")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(REPO / "scripts" / "lint-imports"), str(root)], capture_output=True,
                          text=True, timeout=300)


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for room in ROOMS:
        # symlinks=True: nasc/'s links to the rooms stay links, to the copied (and edited) rooms
        shutil.copytree(REPO / room, root / room, ignore=shutil.ignore_patterns("__pycache__"), symlinks=True)
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_repository_keeps_every_contract() -> None:
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("search/space.py", "def _wrong_way():\n    from nasc.pipeline import config  # noqa\n", "layers"),
        ("devices/oracle.py", "def _wrong_way():\n    from nasc.search import space  # noqa\n", "layers"),
        ("search/ops.py", "import tvm  # noqa\n", "tvm only in compiler and devices"),
        ("firmware_bridge/header.py", "import torch  # noqa\n", "firmware_bridge without torch"),
        ("nasc/fsutil.py", "def _wrong_way():\n    import nasc.devices.spec  # noqa\n", "the core imports no room"),
    ],
)
def test_a_wrong_way_import_breaks_a_contract(tmp_path: Path, module: str, line: str, contract: str) -> None:
    root = _copy(tmp_path)
    target = root / module
    target.write_text(target.read_text() + "\n\n" + line)
    result = _lint(root)
    assert result.returncode != 0
    broken = [row for row in result.stdout.splitlines() if row.rstrip().endswith("BROKEN")]
    assert any(contract in row for row in broken), result.stdout

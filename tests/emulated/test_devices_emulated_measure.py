"""`nasc measure` on the emulated Raspberry Pi: cross-compiled, run under qemu-user, checked, labelled EMULATED.

Uses the emulated root file system in the test cache (NASC_TEST_CACHE_DIR in CI, shared with the
emulated tier's own tests); builds it first when missing (root, debootstrap, qemu-user-static).
"""

from __future__ import annotations

import json
from pathlib import Path

import psutil

from nasc.pipeline.config import parse_config
from nasc.pipeline.measure import measure_model

REPO = Path(__file__).resolve().parents[2]


def test_measure_on_emulated_rpi4(tmp_path: Path) -> None:
    config = parse_config(
        f'[project]\noutput_dir = "{tmp_path / "out"}"\n'
        "[measure]\nwarmup = 1\nnumber = 2\nrepeat = 5\n[compile]\nverify_samples = 1\n",
        "build.toml", str(tmp_path),
    )
    device = config.device("rpi4-emulated")
    report = measure_model(REPO / "examples" / "mbconv-32.onnx", device, config)
    m = report.measurement
    assert m.emulated and m.device == "rpi4-emulated" and "EMULATED" in m.summary()
    assert report.parity.passed and "EMULATED" in report.parity.where
    assert m.median_ms > 0 and len(m.runs_ms) == 5
    assert json.loads(Path(report.json_path).read_text())["measurement"]["emulated"] is True
    leftovers = [p for p in psutil.Process().children(recursive=True)
                 if p.is_running() and p.status() != psutil.STATUS_ZOMBIE and "rpc_server" in " ".join(p.cmdline())]
    assert leftovers == []

"""The stages hand each other typed records: a real tiny search on `local`, exported, compiled, measured
and packaged with the verbs a user types; the bundle's manifest carries what each stage found."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tiny_project import tiny_project

NASC = [str(Path(sys.executable).parent / "nasc")]  # the console script, as a user runs it
MEASURE = "[measure]\nwarmup = 2\nnumber = 5\nrepeat = 10\n"


def _nasc(cwd: Path, *args: str) -> Any:
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run([*NASC, *args, "--json"], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"nasc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr[-3000:]}"
    return json.loads(result.stdout)


def test_search_export_compile_measure_package_verify(tmp_path: Path) -> None:
    (tmp_path / "build.toml").write_text(tiny_project(final_epochs=4, extra=MEASURE))
    _nasc(tmp_path, "lut", "build", "--device", "local")
    searched = _nasc(tmp_path, "search", "--device", "local", "-o", "out/search")
    exported = _nasc(tmp_path, "export", "out/search", "-o", "out/model.onnx")
    compiled = _nasc(tmp_path, "compile", "out/model.onnx", "--device", "local", "-o", "out/compiled")
    measured = _nasc(tmp_path, "measure", "out/compiled")
    packaged = _nasc(tmp_path, "package", "--from", "out/compiled", "--search", "out/search",
                     "-o", "out/model-local.tar.gz")
    verified = _nasc(tmp_path, "verify", "out/model-local.tar.gz")

    assert exported["onnx_path"] == "out/model.onnx" and compiled["onnx_sha256"] == exported["sha256"]
    assert compiled["parity"]["passed"] and measured["parity"]["passed"]
    manifest = verified["manifest"]
    assert manifest == packaged["manifest"]
    assert manifest["accuracy"] == searched["test_accuracy"] > 0.1  # ten classes: chance is 0.1
    latency = manifest["latency"]
    assert latency["predicted_ms"] == searched["predicted_ms"] > 0
    assert latency["measured_median_ms"] == measured["measurement"]["median_ms"] > 0
    assert latency["device"] == "local" and latency["emulated"] is False
    pre, want = manifest["preprocessing"], searched["preprocessing"]
    assert (pre["mean"], pre["std"], pre["class_names"]) == (want["mean"], want["std"], want["class_names"])
    assert pre["resize"] == want["size"][-2:] == [8, 8]
    assert {"arch.json", "search.json", "measure.json"} <= {f["path"] for f in manifest["files"]}

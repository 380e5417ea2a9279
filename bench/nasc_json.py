"""The benches' way to run nasc: the console script as a user types it, with --json, in a folder of the bench's
own and with NASC_CACHE_DIR pointing at a cache of its own; a failure stops the bench with nasc's stderr."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

NASC = str(Path(sys.executable).parent / "nasc")
DEFAULT_TOML = Path(__file__).resolve().parents[1] / "nasc" / "default_build.toml"


def nasc(folder: Path, cache: Path, *args: str) -> tuple[dict[str, Any], float]:
    """Run `nasc ARGS --json` in `folder`; returns the JSON it printed and the wall seconds."""
    started = time.monotonic()
    done = subprocess.run([NASC, *args, "--json"], cwd=folder, capture_output=True, text=True,
                          env={**os.environ, "NASC_CACHE_DIR": str(cache)})
    if done.returncode != 0:
        sys.exit(f"nasc {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout), time.monotonic() - started


def fresh_project(out: Path) -> Path:
    """An empty `out` (removed first) holding project/ with the embedded default as its build.toml."""
    if out.exists():
        shutil.rmtree(out)
    project = (out / "project").resolve()
    project.mkdir(parents=True)
    (project / "build.toml").write_text(DEFAULT_TOML.read_text())
    return project


def task_project(config: Path, out: Path, cache: Path | None, device: str,
                 trials: int) -> tuple[Path, Path, dict[str, Any]]:
    """A project folder in `out` with `config` as its build.toml, its cache (`cache`, else a fresh one in
    `out`, which is then emptied first) and the latency table built there at `trials`: (project, cache,
    the table's summary with the seconds it took as "seconds")."""
    if out.exists() and cache is None:
        shutil.rmtree(out)
    project = (out / "project").resolve()
    project.mkdir(parents=True, exist_ok=True)
    (project / "build.toml").write_text(config.read_text())
    cache = (cache or out / "cache").resolve()
    lut, lut_s = nasc(project, cache, "lut", "build", "--device", device, "--trials", str(trials))
    print(f"table tuned at {trials} trials per task: {lut['blocks']} blocks, {lut_s:.0f} s", flush=True)
    return project, cache, {**lut, "seconds": lut_s}


def spread(values: list[float], digits: int = 4) -> str:
    """'mean +- sample standard deviation' of `values` ("-" when there are none)."""
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} +- {std:.{digits}f}"

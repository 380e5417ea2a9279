"""The default run end to end: `nasc search-and-compile --device local` cold (an empty cache: latency table
and tuning records built from nothing) and warm (the same command again, the caches filled), wall time
per stage, accuracy, predicted vs measured latency of the final network.

    .venv/bin/python bench/search_and_compile.py [--device local] [--out bench-out/search-and-compile]
        [-- extra search-and-compile options, e.g. --trials 16]

Each run is the console script as a user types it, in a fresh folder with no build.toml (the embedded
default), NASC_CACHE_DIR pointing at a cache of the benchmark's own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def run_once(folder: Path, cache: Path, device: str, extra: list[str]) -> tuple[dict[str, Any], float]:
    command = [str(Path(sys.executable).parent / "nasc"), "search-and-compile", "--device", device, "-o", "run",
               "--json", *extra]
    started = time.monotonic()
    done = subprocess.run(command, cwd=folder, env={**os.environ, "NASC_CACHE_DIR": str(cache)},
                          capture_output=True, text=True)
    wall = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout), wall


def describe(label: str, summary: dict[str, Any], wall: float) -> None:
    stages = "  ".join(f"{s['name']} {s['seconds']:.0f}s" if s["status"] == "ran" else f"{s['name']} reused"
                       for s in summary["stages"])
    budget = summary["budget_ms"]
    print(f"{label}: {wall:.0f} s wall ({wall / 60:.1f} min)  [{stages}]")
    print(f"  arch {summary['arch']}")
    print(f"  test accuracy {summary['test_accuracy']:.4f}; predicted {summary['predicted_ms']:.4f} ms, measured "
          f"{summary['measured_ms']:.4f} ms (range {summary['measured_spread_ms'][0]:.4f}-"
          f"{summary['measured_spread_ms'][1]:.4f}), error {summary['prediction_error_pct']:+.1f} %; budget "
          f"{budget} ms {'met' if summary['meets_budget'] else 'NOT met'}")
    print(f"  tuning: {summary['trials_spent']} new trials, {summary['tasks_tuned']} tasks tuned, "
          f"{summary['tasks_reused']} reused")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="local")
    parser.add_argument("--out", type=Path, default=Path("bench-out/search-and-compile"))
    parser.add_argument("extra", nargs="*", help="more search-and-compile options (after --)")
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    cache = (args.out / "cache").resolve()  # absolute: each run starts in its own folder
    results = {}
    for label in ("cold", "warm"):
        folder = args.out / label
        folder.mkdir(parents=True)
        summary, wall = run_once(folder, cache, args.device, args.extra)
        describe(label, summary, wall)
        results[label] = {"wall_s": wall, "summary": summary}
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"warm / cold wall time: {results['warm']['wall_s'] / results['cold']['wall_s']:.2f}")


if __name__ == "__main__":
    main()

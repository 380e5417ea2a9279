"""Tune once, use twice: the latency table tuned at N trials per task, then the final compile of the searched
network at the same N, against the same network compiled cold (an empty tuning database) at N.

    .venv/bin/python bench/lut_tuned.py [--trials 8] [--device local] [--out bench-out/lut-tuned]

The embedded default project (nasc/default_build.toml) (its latency table follows --trials), run as a user
types it: `nasc lut build --trials N`, `nasc search-and-compile --trials N`, then `nasc compile` of the
exported ONNX with a cache of its own. Prints the table's cost (blocks, tasks tuned and shared, trials,
wall time) and the trials the final compile spent after the tuned table over those of the cold compile
(the issue's goal: at most 0.3).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nasc_json import fresh_project, nasc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--device", default="local")
    parser.add_argument("--out", type=Path, default=Path("bench-out/lut-tuned"))
    args = parser.parse_args()
    project = fresh_project(args.out)  # the embedded default: the table follows --trials
    cache, cold_cache = (args.out / "cache").resolve(), (args.out / "cold-cache").resolve()
    n = str(args.trials)

    lut, lut_s = nasc(project, cache, "lut", "build", "--device", args.device, "--trials", n)
    print(f"tuned table at {n} trials per task: {lut['blocks']} blocks, {lut['tasks_tuned']} tasks tuned, "
          f"{lut['tasks_reused']} shared with an earlier block, {lut['trials_run']} trials, {lut_s:.0f} s")
    run, run_s = nasc(project, cache, "search-and-compile", "--device", args.device, "--trials", n, "-o", "run")
    print(f"search-and-compile: {run_s:.0f} s; {run['arch']}; predicted {run['predicted_ms']:.4f} ms, measured "
          f"{run['measured_ms']:.4f} ms ({run['prediction_error_pct']:+.1f} %); final compile "
          f"{run['trials_spent']} new trials, {run['tasks_tuned']} tasks tuned, {run['tasks_reused']} reused")
    cold, cold_s = nasc(project, cold_cache, "compile", "run/export/model.onnx", "--device", args.device,
                        "--trials", n, "-o", "cold")
    cold_trials = cold["tuning"]["trials_run"]
    print(f"the same network compiled cold at {n}: {cold_trials} trials, {cold_s:.0f} s")
    ratio = run["trials_spent"] / cold_trials if cold_trials else float("nan")
    print(f"final compile after the tuned table / cold: {ratio:.2f} of the trials (goal <= 0.3)")
    results = {"lut": lut, "lut_s": lut_s, "run": run, "run_s": run_s, "cold": cold, "cold_s": cold_s,
               "trial_ratio": ratio}
    (args.out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

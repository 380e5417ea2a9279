"""The budget is spent: `nasc search-and-compile --latency-ms B` for several budgets B on the embedded default,
with a tuned latency table; for each, where the shipped network lands (predicted and measured on the device,
as a share of B), what the search's own argmax path would have been, and the test accuracy.

    .venv/bin/python bench/budget_spend.py [--budgets 0.06 0.08 0.1 0.4] [--trials 8] [--device local]
        [--out bench-out/budget-spend] [--cache DIR]

Every run is the console script as a user types it, in one project folder whose build.toml is the embedded
default (the table follows --trials), one cache shared by all runs (the table is built and tuned
by the first). The goal (issue: "the budget means shipped latency, and the search spends it"): the
measured latency lands within 10 % under B, or the summary says the space holds nothing bigger.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from nasc_json import fresh_project, nasc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.06, 0.08, 0.1, 0.4])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--device", default="local")
    parser.add_argument("--out", type=Path, default=Path("bench-out/budget-spend"))
    parser.add_argument("--cache", type=Path, default=None, help="cache to use (default: a fresh one in --out)")
    args = parser.parse_args()
    project = fresh_project(args.out)  # the embedded default: the table follows --trials
    cache = (args.cache or args.out / "cache").resolve()

    lut, lut_s = nasc(project, cache, "lut", "build", "--device", args.device, "--trials", str(args.trials))
    print(f"tuned table at {args.trials} trials per task: {lut['blocks']} blocks, {lut_s:.0f} s")
    rows = []
    for budget in args.budgets:
        run, wall = nasc(project, cache, "search-and-compile", "--device", args.device, "--trials", str(args.trials),
                         "--latency-ms", str(budget), "-o", f"run-{budget:g}")
        search = json.loads((project / f"run-{budget:g}" / "search" / "search.json").read_text())
        pick = search["result"]["figures"].get("budget_pick", {})
        row = {"budget_ms": budget, "arch": run["arch"], "predicted_ms": run["predicted_ms"],
               "measured_ms": run["measured_ms"], "measured_share": run["measured_ms"] / budget,
               "predicted_share": run["predicted_ms"] / budget, "test_accuracy": run["test_accuracy"],
               "argmax_ms": pick.get("argmax_ms"), "verdict": pick.get("verdict"), "note": run["budget_note"],
               "space_max_ms": pick.get("space_max_ms"), "trials_spent": run["trials_spent"], "wall_s": wall}
        rows.append(row)
        argmax = f"{row['argmax_ms'] / budget:.0%}" if row["argmax_ms"] else "-"
        print(f"budget {budget:g} ms: predicted {row['predicted_ms']:.4f} ({row['predicted_share']:.0%}), measured "
              f"{row['measured_ms']:.4f} ms ({row['measured_share']:.0%}); argmax path {argmax}; "
              f"test acc {row['test_accuracy']:.4f}; {row['verdict']}; {wall:.0f} s", flush=True)
    in_window = [r for r in rows if r["verdict"] == "in-window"]
    if in_window:
        shares = [r["measured_share"] for r in in_window]
        print(f"measured / budget where the space allows it: median {statistics.median(shares):.0%} "
              f"(range {min(shares):.0%}-{max(shares):.0%}); within 10 % under: "
              f"{sum(0.9 <= s <= 1.0 for s in shares)}/{len(shares)}")
    (args.out / "results.json").write_text(json.dumps({"lut": lut, "lut_s": lut_s, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

"""NAO vs ProxylessNAS vs random search on one task and device, each through `nasc search-and-compile`.

    .venv/bin/python bench/strategy_compare.py [--config bench/configs/fashion-mnist.toml] [--device local]
        [--latency-ms 0.1] [--trials 8] [--seeds 0 1 2] [--strategies proxyless nao random]
        [--out bench-out/strategies] [--cache DIR]

Every run is the console script as a user types it, in one project folder (the --config file as its
build.toml) with one cache shared by all runs, so the latency table is built and tuned once, by the first.
Each strategy searches with its own table of build.toml (the config sets their epochs so that their search
stages take about the same wall time; the table below reports it), the chosen network is trained the same
way ([search] final_epochs), compiled at the same --trials, checked against onnxruntime and measured on the
device. Reported per strategy: test accuracy of the shipped network and whether its *measured* latency is at
or under the budget, mean and spread over the seeds, and the wall seconds of each stage.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nasc_json import nasc, spread, task_project

REPO = Path(__file__).resolve().parents[1]


def _stage_seconds(run: dict[str, Any]) -> dict[str, float]:
    return {s["name"]: float(s["seconds"]) for s in run["stages"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "bench" / "configs" / "fashion-mnist.toml")
    parser.add_argument("--device", default="local")
    parser.add_argument("--latency-ms", type=float, default=0.1)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--strategies", nargs="+", default=["proxyless", "nao", "random"])
    parser.add_argument("--out", type=Path, default=Path("bench-out/strategies"))
    parser.add_argument("--cache", type=Path, default=None, help="cache to use (default: a fresh one in --out)")
    args = parser.parse_args()
    project, cache, lut = task_project(args.config, args.out, args.cache, args.device, args.trials)
    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        for strategy in args.strategies:
            name = f"{strategy}-{seed}"
            run, wall = nasc(project, cache, "search-and-compile", "--device", args.device, "--strategy", strategy,
                             "--seed", str(seed), "--trials", str(args.trials), "--latency-ms", str(args.latency_ms),
                             "-o", name)
            row = {"strategy": strategy, "seed": seed, "arch": run["arch"], "test_accuracy": run["test_accuracy"],
                   "predicted_ms": run["predicted_ms"], "measured_ms": run["measured_ms"],
                   "meets_budget": run["meets_budget"], "note": run["budget_note"], "wall_s": wall,
                   "stages_s": _stage_seconds(run), "trials_spent": run["trials_spent"]}
            search = json.loads((project / name / "search" / "search.json").read_text())
            row["rounds"] = [h["pool_round"] for h in search["history"] if "pool_round" in h]
            rows.append(row)
            for r in row["rounds"]:
                noise = r["noise"]
                print(f"  round {r['round']}: pool {r['pool_size']}, decoded {r['decoded']}, random {r['random']}, "
                      f"best {r['best_evaluated_accuracy']:.4f}, tau pool {r.get('predictor_kendall_tau')}, "
                      f"tau held-out {r.get('heldout_kendall_tau')}, steps {r.get('step_sizes')}, noise rescored "
                      f"{noise['rescore_abs_diff']}, two 500-image subsets {noise['subsets_500_abs_diff']}")
            st = row["stages_s"]
            print(f"{name}: test acc {row['test_accuracy']:.4f}, measured {row['measured_ms']:.4f} ms "
                  f"(predicted {row['predicted_ms']:.4f}; {'within' if row['meets_budget'] else 'OVER'} budget), "
                  f"search {st.get('search', 0):.0f} s, compile {st.get('compile', 0):.0f} s, {wall:.0f} s in all; "
                  f"{row['arch']}", flush=True)
    print(f"\nbudget {args.latency_ms:g} ms on {args.device}; mean +- standard deviation over seeds {args.seeds}")
    print("| strategy | test accuracy (all) | test accuracy (measured within budget) | within budget | measured ms "
          "| search s | whole run s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for strategy in args.strategies:
        mine = [r for r in rows if r["strategy"] == strategy]
        ok = [r["test_accuracy"] for r in mine if r["meets_budget"]]
        print(f"| {strategy} | {spread([r['test_accuracy'] for r in mine])} | {spread(ok)} | "
              f"{len(ok)}/{len(mine)} | {spread([r['measured_ms'] for r in mine])} | "
              f"{spread([r['stages_s'].get('search', 0.0) for r in mine])} | {spread([r['wall_s'] for r in mine])} |")
    (args.out / "results.json").write_text(json.dumps({"lut": lut, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

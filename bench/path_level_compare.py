"""Path-level transformations: the Tree-LSTM meta-controller vs random moves vs fine-tuning the start network
for the same time, each through `nasc search-and-compile` (and, with --side-by-side, ProxylessNAS and NAO at
the same budget).

    .venv/bin/python bench/path_level_compare.py [--config bench/configs/fashion-mnist-small.toml]
        [--device local] [--latency-ms 0.12] [--trials 4] [--seeds 0 1 2] [--start mobilenetv2]
        [--side-by-side] [--out bench-out/path-level] [--cache DIR]

Every run is the console script as a user types it, in one project folder (the --config file as its
build.toml) with one cache, so the latency table is built and tuned once and a cell measured by one run is
in the table for the next. Per seed, from the same --start network (trained the same [search.path_level]
start_epochs with the same seed, so the same weights):
- controller: `--strategy path-level` with the meta-controller choosing the moves;
- random: the same rounds with uniformly drawn moves (`--set policy=random`);
- fine-tune: no rounds (`--set rounds=0`); the final training gets as many extra epochs as the
  controller's rounds took wall time (their seconds over one start epoch's, from events.jsonl), so it
  spends that time training the start network instead of growing it. The rounds' seconds do not count
  the device measuring new cells: a cell is measured once per device and toolchain and stays in the
  table for every later search, like the table's own blocks, whose build no arm is charged for either
  (both figures are reported).
All three then train [search] final_epochs (fine-tune: plus its extra epochs), compile at the same --trials,
are checked against onnxruntime and measured on the device. Reported per arm: test accuracy of the shipped
network (mean and spread over seeds, and the paired gain over fine-tune), its measured latency against the
budget, and the seconds of the rounds, of which measuring new cells on the device.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from itertools import pairwise
from pathlib import Path
from typing import Any

from nasc_json import nasc, spread, task_project

REPO = Path(__file__).resolve().parents[1]
ARMS = ("controller", "random", "fine-tune")
STAGE_LUT = ("lut", "lut-tune")  # events of blocks measured (and tuned) while the search runs


def _events(folder: Path) -> list[dict[str, Any]]:
    lines = (folder / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def round_timing(folder: Path) -> dict[str, float]:
    """Seconds of one start epoch, of the rounds, and of the rounds' device measurements, from events.jsonl.

    A start epoch is the time between two epochs' closing notes (training and scoring; with one start
    epoch, from its first event to its note); the rounds run from the last note to the last path-level
    event; a measurement from a lut event to the next event of the rounds."""
    events = [e for e in _events(folder) if e["stage"] in ("warmup", "path-level", *STAGE_LUT)]
    warm = [e["t_s"] for e in events if e["stage"] == "warmup"]
    notes = [e["t_s"] for e in events if e["stage"] == "warmup" and e["message"]]  # one per start epoch
    rounds = [e for e in events if e["t_s"] >= warm[-1]]
    epoch_s = (notes[-1] - notes[0]) / (len(notes) - 1) if len(notes) > 1 else notes[0] - warm[0]
    last_round = max((e["t_s"] for e in rounds if e["stage"] == "path-level"), default=warm[-1])
    measure_s = 0.0
    for before, after in pairwise(rounds):
        if before["stage"] in STAGE_LUT:
            measure_s += after["t_s"] - before["t_s"]
    return {"start_epoch_s": epoch_s, "rounds_s": last_round - warm[-1], "measure_s": measure_s}


def run_arm(project: Path, cache: Path, args: argparse.Namespace, seed: int, arm: str,
            extra: list[str]) -> dict[str, Any]:
    """One search-and-compile; its figures as a row."""
    name = f"{arm}-{seed}"
    strategy = arm if arm in ("proxyless", "nao") else "path-level"
    command = ["search-and-compile", "--device", args.device, "--strategy", strategy, "--seed", str(seed),
               "--trials", str(args.trials), "--latency-ms", str(args.latency_ms), "-o", name]
    if strategy == "path-level":
        command += ["--start", args.start]
    run, wall = nasc(project, cache, *command, *extra)
    search = json.loads((project / name / "search" / "search.json").read_text())
    figures = search["result"]["figures"]
    row = {"arm": arm, "seed": seed, "arch": run["arch"], "test_accuracy": run["test_accuracy"],
           "predicted_ms": run["predicted_ms"], "measured_ms": run["measured_ms"],
           "meets_budget": run["meets_budget"], "wall_s": wall,
           "stages_s": {s["name"]: float(s["seconds"]) for s in run["stages"]},
           "accepted_moves": figures.get("accepted_moves"), "extra": extra}
    if strategy == "path-level":
        row["timing"] = round_timing(project / name)
    print(f"{name}: test acc {row['test_accuracy']:.4f}, measured {row['measured_ms']:.4f} ms "
          f"(predicted {row['predicted_ms']:.4f}; {'within' if row['meets_budget'] else 'OVER'} budget), "
          f"search {row['stages_s'].get('search', 0):.0f} s, {wall:.0f} s in all, timing {row.get('timing')}, "
          f"accepted {row['accepted_moves']}; {row['arch']}", flush=True)
    return row


def _table(rows: list[dict[str, Any]], arms: list[str], budget: float) -> None:
    base = {r["seed"]: r["test_accuracy"] for r in rows if r["arm"] == "fine-tune"}
    print(f"\nbudget {budget:g} ms; mean +- standard deviation over seeds")
    print("| arm | test accuracy | gain over fine-tune (paired) | within budget (measured) | measured ms "
          "| rounds s (of which measuring) | search s | whole run s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for arm in arms:
        mine = [r for r in rows if r["arm"] == arm]
        gains = [100 * (r["test_accuracy"] - base[r["seed"]]) for r in mine if r["seed"] in base]
        timing = [r["timing"] for r in mine if "timing" in r]
        rounds = (f"{spread([t['rounds_s'] for t in timing], 0)} ({spread([t['measure_s'] for t in timing], 0)})"
                  if timing and arm != "fine-tune" else "-")
        print(f"| {arm} | {spread([100 * r['test_accuracy'] for r in mine], 2)} % | "
              f"{spread(gains, 2)} points | {sum(bool(r['meets_budget']) for r in mine)}/{len(mine)} | "
              f"{spread([r['measured_ms'] for r in mine])} | {rounds} | "
              f"{spread([r['stages_s'].get('search', 0.0) for r in mine], 0)} | "
              f"{spread([r['wall_s'] for r in mine], 0)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "bench" / "configs" / "fashion-mnist-small.toml")
    parser.add_argument("--device", default="local")
    parser.add_argument("--latency-ms", type=float, default=0.12)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--start", default="mobilenetv2", help="the start network of every path-level arm")
    parser.add_argument("--side-by-side", action="store_true", help="also run proxyless and NAO per seed")
    parser.add_argument("--out", type=Path, default=Path("bench-out/path-level"))
    parser.add_argument("--cache", type=Path, default=None, help="cache to use (default: a fresh one in --out)")
    args = parser.parse_args()
    project, cache, lut = task_project(args.config, args.out, args.cache, args.device, args.trials)
    final_epochs = int(tomllib.loads(args.config.read_text())["search"]["final_epochs"])
    arms = list(ARMS) + (["proxyless", "nao"] if args.side_by_side else [])
    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        controller = run_arm(project, cache, args, seed, "controller", ["--set", "policy=controller"])
        rows.append(controller)
        rows.append(run_arm(project, cache, args, seed, "random", ["--set", "policy=random"]))
        timing = controller["timing"]
        extra_epochs = max(0, round((timing["rounds_s"] - timing["measure_s"]) / timing["start_epoch_s"]))
        rows.append(run_arm(project, cache, args, seed, "fine-tune",
                            ["--set", "rounds=0", "--epochs", str(final_epochs + extra_epochs)]))
        for arm in arms[len(ARMS):]:
            rows.append(run_arm(project, cache, args, seed, arm, []))
        _table(rows, arms, args.latency_ms)
        (args.out / "results.json").write_text(json.dumps({"lut": lut, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

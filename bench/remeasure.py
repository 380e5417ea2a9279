"""Time the artifacts of several search-and-compile runs again, back to back, in rounds.

    .venv/bin/python bench/remeasure.py RUN_FOLDER... [--rounds 3] [--device local]

A run's own measurement is taken when the run ends; on a shared host runs an hour apart can see the
CPU at speeds that differ by half, so their latencies do not compare. This bench copies each run's
compile/ folder aside (the runs' own measure.json stay as they are), then times every artifact with
`nasc measure` once per round, the artifacts in turn, so that each round sees one state of the host.
Reported per run: the median over the rounds (and their range), the run's own figure, the predicted
latency and whether the re-measured median meets the run's budget.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

from nasc_json import nasc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="output folders of search-and-compile runs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="local")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    runs = {folder.name: json.loads((folder / "run.json").read_text()) for folder in args.runs}
    timings: dict[str, list[float]] = {name: [] for name in runs}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for folder in args.runs:
            shutil.copytree(folder / "compile", work / folder.name)
        for index in range(args.rounds):
            for name in runs:
                result, _ = nasc(work, work / "cache", "measure", str(work / name), "--device", args.device)
                timings[name].append(float(result["measurement"]["median_ms"]))
            print(f"round {index + 1}: " + ", ".join(f"{n} {t[-1]:.4f}" for n, t in timings.items()), flush=True)
    rows = []
    print("| run | re-measured ms (median of rounds, range) | run's own ms | predicted ms | budget ms | meets |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, run in runs.items():
        median = statistics.median(timings[name])
        budget = run.get("budget_ms")
        meets = None if budget is None else median <= budget
        rows.append({"run": name, "remeasured_ms": timings[name], "median_ms": median,
                     "run_ms": run["measured_ms"], "predicted_ms": run["predicted_ms"], "budget_ms": budget,
                     "meets_budget": meets})
        print(f"| {name} | {median:.4f} ({min(timings[name]):.4f}-{max(timings[name]):.4f}) | "
              f"{run['measured_ms']:.4f} | {run['predicted_ms']:.4f} | {budget} | {meets} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

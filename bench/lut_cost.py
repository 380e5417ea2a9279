"""What a tuned latency table costs, and how it grows: `nasc lut build --trials N` on spaces of several sizes,
each in a fresh cache, as a user types it. Prints per case: blocks, distinct tuning tasks, trials spent,
wall time and its split (the one tuning run; exporting, building and timing the blocks).

    .venv/bin/python bench/lut_cost.py [--device local] [--out bench-out/lut-cost]
        [--case NAME:TRIALS ...]   (NAME: small, default, wide; default: small:8 default:4 default:8)

Spaces: `default` is the embedded default's; `small` keeps its first two stages and ops k3_e3, k5_e3,
zero; `wide` adds k3_e1 and k7_e1 ops and a fourth stage (96 channels).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from nasc_json import DEFAULT_TOML, nasc

DEFAULT_STAGES = """stages = [
    { channels = 24, depth = 2, stride = 2 },
    { channels = 40, depth = 2, stride = 2 },
    { channels = 64, depth = 2, stride = 1 },
]"""
DEFAULT_OPS = 'ops = ["k3_e3", "k3_e6", "k5_e3", "k5_e6", "k7_e3", "k7_e6", "zero"]'
SPACES = {
    "default": (DEFAULT_OPS, DEFAULT_STAGES),
    "small": ('ops = ["k3_e3", "k5_e3", "zero"]',
              "stages = [{ channels = 24, depth = 2, stride = 2 }, { channels = 40, depth = 2, stride = 2 }]"),
    "wide": ('ops = ["k3_e1", "k3_e3", "k3_e6", "k5_e3", "k5_e6", "k7_e1", "k7_e3", "k7_e6", "zero"]',
             DEFAULT_STAGES.replace("stride = 1 },\n]",
                                    "stride = 1 },\n    { channels = 96, depth = 2, stride = 1 },\n]")),
}


def project_text(space: str) -> str:
    ops, stages = SPACES[space]
    text = DEFAULT_TOML.read_text()
    assert DEFAULT_OPS in text and DEFAULT_STAGES in text, "nasc/default_build.toml changed: update this bench"
    return text.replace(DEFAULT_OPS, ops).replace(DEFAULT_STAGES, stages)


def run_case(out: Path, device: str, space: str, trials: int) -> dict[str, Any]:
    folder = (out / f"{space}-{trials}").resolve()
    folder.mkdir(parents=True)
    (folder / "build.toml").write_text(project_text(space))
    report, wall = nasc(folder, folder / "cache", "lut", "build", "--device", device, "--trials", str(trials))
    return {"space": space, "trials": trials, "wall_s": wall, **report}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="local")
    parser.add_argument("--out", type=Path, default=Path("bench-out/lut-cost"))
    parser.add_argument("--case", action="append", default=None, metavar="SPACE:TRIALS")
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    cases = [(c.split(":")[0], int(c.split(":")[1])) for c in (args.case or ["small:8", "default:4", "default:8"])]
    rows = []
    for space, trials in cases:
        row = run_case(args.out, args.device, space, trials)
        rows.append(row)
        tasks = row["tasks_tuned"] + row["tasks_reused"]
        rest = row["wall_s"] - row["tune_s"]
        print(f"{space:8s} {trials:2d} trials/task: {row['blocks']:3d} blocks, {tasks:3d} distinct tasks, "
              f"{row['trials_run']:5d} trials; {row['wall_s']:5.0f} s = tuning {row['tune_s']:4.0f} s "
              f"({row['tune_s'] / max(row['trials_run'], 1):.2f} s/trial) + build and time {rest:4.0f} s "
              f"({rest / max(row['blocks'], 1):.1f} s/block)", flush=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

"""Predictor fidelity on `local`: 30 random architectures of the search space, predicted vs measured end to end.

Fills the latency table for every candidate block (cached), compiles and times each whole network
through the same local RPC server, fits ``measured = scale * sum + overhead`` and reports k-fold
held-out error: MAPE and the shares within +-5 % and +-10 %, plus the plain sum's error as the peer.

    .venv/bin/python bench/predictor_fidelity.py [--archs 30] [--cache DIR] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from nasc.events import ProgressEvent
from nasc.pipeline.config import load_config
from nasc.pipeline.fidelity import fit_predictor


def _print_progress(event: ProgressEvent) -> None:
    if event.total:
        print(f"  {event.stage} {event.label} {event.step}/{event.total}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default=None, help="project file (default: embedded default)")
    parser.add_argument("--cache", default=None, help="cache dir (default: the project's)")
    parser.add_argument("--json", default=None, help="write the full report here")
    args = parser.parse_args()
    config = load_config(args.config)
    if args.cache:
        config = config.with_section("project", cache_dir=str(Path(args.cache).resolve()))
    device = config.device("local")
    start = time.monotonic()
    report = fit_predictor(config, device, args.archs, seed=args.seed, progress=_print_progress)
    wall = time.monotonic() - start
    fit = report.fit
    print(f"device {device.name} ({device.target_json()}), {fit.samples} networks, {wall:.0f} s")
    print(f"fit: measured = {fit.scale:.3f} * sum(blocks) + {fit.overhead_ms:.4f} ms")
    print(f"held-out (5-fold): MAPE {fit.mape:.1%}, within +-5% {fit.within_5pct:.0%}, "
          f"within +-10% {fit.within_10pct:.0%}")
    raw = report.raw_sum
    print(f"plain sum (peer): MAPE {raw['mape']:.1%}, within +-5% {raw['within_5pct']:.0%}, "
          f"within +-10% {raw['within_10pct']:.0%}")
    noisy = sum(s.noisy for s in report.samples)
    print(f"end-to-end measurements flagged noisy: {noisy}/{len(report.samples)}")
    for s in sorted(report.samples, key=lambda s: s.measured_ms):
        err = (s.predicted_ms - s.measured_ms) / s.measured_ms
        print(f"  {s.measured_ms:8.4f} ms measured  {s.predicted_ms:8.4f} predicted  {err:+6.1%}  {s.arch}")
    if args.json:
        Path(args.json).write_text(json.dumps({**report.to_dict(), "wall_s": wall}, indent=2))


if __name__ == "__main__":
    main()

"""Predictor fidelity on `local`: 30 random architectures of the search space, predicted vs measured end to end.

Fills the latency table for every candidate block (cached; tuned at --trials per task when > 0), compiles
each whole network as the pipeline ships it (with --trials: the table's records plus the trials the final
compile spends on the network's own workloads), times it through the same local RPC server, fits
``measured = scale * sum + overhead`` and reports k-fold held-out error: MAPE and the shares within
+-5 % and +-10 %, plus the plain sum's error as the peer. With --trials, the untuned table's plain sum
against the same shipped (tuned) networks is reported too: what the search optimised before tuned tables.

    .venv/bin/python bench/predictor_fidelity.py [--archs 30] [--trials 8] [--cache DIR] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from nasc.compiler.toolchain import table_toolchain
from nasc.devices.latency_table import LatencyTable
from nasc.devices.predictor import TablePredictor, error_stats
from nasc.events import ProgressEvent
from nasc.pipeline.config import load_config
from nasc.pipeline.fidelity import fit_predictor, random_archs
from nasc.pipeline.latency_table_build import build_project_table
from nasc.search.runtime import search_space


def _print_progress(event: ProgressEvent) -> None:
    if event.total:
        print(f"  {event.stage} {event.label} {event.step}/{event.total}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trials", type=int, default=0, help="tuned table and networks at this budget (0: untuned)")
    parser.add_argument("--config", default=None, help="project file (default: embedded default)")
    parser.add_argument("--cache", default=None, help="cache dir (default: the project's)")
    parser.add_argument("--json", default=None, help="write the full report here")
    args = parser.parse_args()
    config = load_config(args.config)
    if args.cache:
        config = config.with_section("project", cache_dir=str(Path(args.cache).resolve()))
    device = config.device("local")
    start = time.monotonic()
    report = fit_predictor(config, device, args.archs, seed=args.seed, trials=args.trials, progress=_print_progress)
    wall = time.monotonic() - start
    untuned_vs_shipped = None
    if args.trials:
        untuned_config = config.with_section("search", table_trials=0)
        build_project_table(untuned_config, device, progress=_print_progress)
        with LatencyTable.in_cache(config.cache_dir(), table_toolchain(0, device.threads)) as table:
            untuned = TablePredictor.from_table(table, device)
        space = search_space(config.search, config.data, config.base_dir)
        archs = random_archs(space, args.archs, args.seed)
        sums = [untuned.sum_ms(list(a.blocks())) for a in archs]
        untuned_vs_shipped = error_stats(sums, [s.measured_ms for s in report.samples])
    fit = report.fit
    print(f"device {device.name} ({device.target_json()}), {fit.samples} networks, {wall:.0f} s, "
          f"table {'tuned at ' + str(args.trials) + ' trials per task' if args.trials else 'untuned'}, "
          f"{device.threads or 'default'} runtime threads")
    print(f"fit: measured = {fit.scale:.3f} * sum(blocks) + {fit.overhead_ms:.4f} ms")
    print(f"held-out (5-fold): MAPE {fit.mape:.1%}, within +-5% {fit.within_5pct:.0%}, "
          f"within +-10% {fit.within_10pct:.0%}")
    raw = report.raw_sum
    print(f"plain sum (peer): MAPE {raw['mape']:.1%}, within +-5% {raw['within_5pct']:.0%}, "
          f"within +-10% {raw['within_10pct']:.0%}")
    if untuned_vs_shipped is not None:
        u = untuned_vs_shipped
        print(f"untuned table's plain sum vs the same shipped networks: MAPE {u['mape']:.1%}, within +-5% "
              f"{u['within_5pct']:.0%}, within +-10% {u['within_10pct']:.0%}")
    noisy = sum(s.noisy for s in report.samples)
    print(f"end-to-end measurements flagged noisy: {noisy}/{len(report.samples)}")
    for s in sorted(report.samples, key=lambda s: s.measured_ms):
        err = (s.predicted_ms - s.measured_ms) / s.measured_ms
        print(f"  {s.measured_ms:8.4f} ms measured  {s.predicted_ms:8.4f} predicted  {err:+6.1%}  {s.arch}")
    if args.json:
        Path(args.json).write_text(json.dumps({**report.to_dict(), "wall_s": wall, "trials": args.trials,
                                               "untuned_vs_shipped": untuned_vs_shipped}, indent=2))


if __name__ == "__main__":
    main()

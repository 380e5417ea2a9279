"""Quality: the searched network vs a MobileNetV2-style baseline (every layer k3_e6, width scaled to
the same latency) on the project's data, over several seeds, at matched *measured* latency.

    .venv/bin/python bench/search_quality.py --device local --latency-ms 0.8 [--seeds 0 1 2]
        [--widths 0.5 0.625 0.75 0.875 1.0] [--config bench/configs/fashion-mnist.toml] [--out bench-out/search-quality]

Steps: build the device's latency table for the search space and for each baseline width
(nasc.devices, real TVM RPC measurements; cached), search once per seed with that table's
predictor, pick the baseline width whose predicted latency is closest to the searched networks'
mean, train the baseline per seed with the same data split and epochs (run_search on a space
whose only op is k3_e6 and no search epochs), then compile and time every trained network end to
end on the device. Prints accuracy mean / spread and measured median latency, and the ratios.
The paper (ImageNet, GPU/mobile) reports +3.1% top-1 and 1.2x faster than MobileNetV2.
`make_predictor` is the only place that knows about nasc.devices; any LatencyPredictor fits.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path
from typing import Any

from nasc.latency import LatencyPredictor
from nasc.pipeline.config import Config, load_config
from nasc.search.outputs import SearchResult
from nasc.search.runtime import run_search
from nasc.search.space import ArchSpec, SearchSpace


def make_predictor(config: Config, device_name: str) -> LatencyPredictor:
    """Measure the space's blocks on the device (cached) and return the table's predictor."""
    from nasc.pipeline.latency_table_build import build_project_table
    from nasc.pipeline.search import device_predictor

    device = config.device(device_name)
    build_project_table(config, device)
    return device_predictor(config, device)


def baseline_config(config: Config, width: float) -> Config:
    """MobileNetV2-style: every layer k3_e6, stage widths scaled by `width` (multiples of 4)."""
    space = config.search.space
    stages = tuple(dataclasses.replace(s, channels=max(4, round(s.channels * width / 4) * 4)) for s in space.stages)
    stem = max(4, round(space.stem_channels * width / 4) * 4)
    new_space = dataclasses.replace(space, ops=("k3_e6",), stages=stages, stem_channels=stem)
    config = dataclasses.replace(config, search=dataclasses.replace(config.search, space=new_space, latency_ms=None))
    return config.with_section("search.proxyless", warmup_epochs=0, epochs=0)


def measure(config: Config, device_name: str, results: list[SearchResult]) -> list[float]:
    """Compile each trained network and time it end to end on the device (median ms)."""
    from nasc.devices.rpc import SessionSource
    from nasc.pipeline.fidelity import measure_networks

    device = config.device(device_name)
    with SessionSource(device, config.cache_dir(), config.measure) as source:
        found = measure_networks(device, [r.arch for r in results], config.cache_dir(), config.measure, source)
    return [m.median_ms for m in found]


def _search(config: Config, seed: int, predictor: LatencyPredictor, out: Path) -> SearchResult:
    seeded = config.with_section("search", seed=seed)
    return run_search(seeded.search, seeded.data, predictor, out, base_dir=seeded.base_dir)


def _stats(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} +- {spread:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None)
    parser.add_argument("--device", default="local")
    parser.add_argument("--latency-ms", type=float, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--widths", type=float, nargs="+", default=[0.5, 0.625, 0.75, 0.875, 1.0])
    parser.add_argument("--out", default="bench-out/search-quality")
    args = parser.parse_args()

    config = load_config(args.config).with_section("search", latency_ms=args.latency_ms)
    out = Path(args.out)
    predictor = make_predictor(config, args.device)
    searched = [_search(config, s, predictor, out / f"searched-{s}") for s in args.seeds]
    target_ms = statistics.mean(r.predicted_ms for r in searched)

    candidates: list[tuple[float, float, Config, LatencyPredictor]] = []
    for width in args.widths:
        cfg = baseline_config(config, width)
        pred = make_predictor(cfg, args.device)
        probe = ArchSpec.uniform(SearchSpace(cfg.search.space, searched[0].arch.space.num_classes), "k3_e6")
        candidates.append((abs(pred.network_ms(probe.blocks()) - target_ms), width, cfg, pred))
    _, width, base_cfg, base_pred = min(candidates, key=lambda c: c[0])
    baseline = [_search(base_cfg, s, base_pred, out / f"baseline-{s}") for s in args.seeds]

    measured = measure(config, args.device, searched + baseline)
    m_search, m_base = measured[: len(searched)], measured[len(searched) :]
    acc_s = [r.test_accuracy for r in searched]
    acc_b = [r.test_accuracy for r in baseline]
    print(f"device {args.device}, budget {args.latency_ms} ms, seeds {args.seeds}, baseline width x{width}")
    for r in searched:
        print(f"  searched seed {r.seed}: {r.arch}  predicted {r.predicted_ms:.4f} ms  test acc {r.test_accuracy:.4f}")
    print(f"{'':10}{'test accuracy':>22}{'measured median ms':>24}{'predicted ms':>16}")
    print(f"{'searched':10}{_stats(acc_s):>22}{_stats(m_search):>24}{target_ms:>16.4f}")
    base_ms = statistics.mean(r.predicted_ms for r in baseline)
    print(f"{'baseline':10}{_stats(acc_b):>22}{_stats(m_base):>24}{base_ms:>16.4f}")
    gain = statistics.mean(acc_s) - statistics.mean(acc_b)
    speed = statistics.mean(m_base) / statistics.mean(m_search)
    print(f"searched - baseline accuracy: {gain * 100:+.2f} points; baseline / searched measured latency: {speed:.2f}x")
    print("(paper, ImageNet: +3.1 points top-1 and 1.2x faster than MobileNetV2)")
    summary: dict[str, Any] = {
        "searched": [r.to_dict() for r in searched], "baseline": [r.to_dict() for r in baseline],
        "measured_ms": {"searched": m_search, "baseline": m_base}, "baseline_width": width,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

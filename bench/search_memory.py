"""Peak memory of one training step: binarized supernet vs all paths at once (DARTS-style) vs the
largest single network of the space, same batch, each in its own process. Prints ratios.

    .venv/bin/python bench/search_memory.py [--batch 256] [--repeats 3]

Each child builds its model and batch, notes its RSS, runs one step and reports the peak RSS
(ru_maxrss) above that point: activations, gradients and optimizer state of that step. The
figure is the median over --repeats fresh processes. The paper's claim: binarized paths keep
memory at the level of training one network (target <= 1.3x); all paths cost several times more.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys

MODES = ("single", "binarized-weight", "binarized-arch", "all-paths")


def child(mode: str, batch: int) -> dict[str, float]:
    import gc

    import psutil
    import torch
    import torch.nn.functional as F

    from nasc.search.settings import SpaceSettings
    from nasc.search.space import ArchSpec, SearchSpace, build
    from nasc.search.supernet import Supernet

    torch.set_num_threads(1)
    torch.manual_seed(0)
    space = SearchSpace(SpaceSettings(), num_classes=10)
    gen = torch.Generator().manual_seed(0)
    if mode == "single":
        largest = ArchSpec(space, tuple(
            max((op for op in layer.ops if op != "zero"), key=lambda o: (int(o[1]), int(o[4:])))
            for layer in space.layers()))
        model: torch.nn.Module = build(largest)
        params = list(model.parameters())
    else:
        model = Supernet(space)
        params = model.weight_parameters()
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    x = torch.randn(batch, *space.input_shape()[1:])
    y = torch.randint(0, 10, (batch,))
    model.train()
    gc.collect()
    before = psutil.Process().memory_info().rss
    if mode == "binarized-weight":
        model.sample_single(gen)
    elif mode == "binarized-arch":
        model.sample_two(gen)
    elif mode == "all-paths":
        model.set_all_paths()
    loss = F.cross_entropy(model(x), y)
    if mode == "binarized-arch":
        gates = [m.gates for m in model.mixed_ops()]
        torch.autograd.grad(loss, gates)
    else:
        opt.zero_grad()
        loss.backward()
        opt.step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"step_mib": max(peak - before, 0) / 2**20, "peak_mib": peak / 2**20,
            "params_mib": sum(p.numel() for p in model.parameters()) * 4 / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=MODES)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.batch)))
        return
    results: dict[str, dict[str, float]] = {}
    for mode in MODES:
        runs = []
        for _ in range(args.repeats):
            proc = subprocess.run([sys.executable, __file__, "--child", mode, "--batch", str(args.batch)],
                                  capture_output=True, text=True, check=True)
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        results[mode] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    base = results["single"]["step_mib"]
    print(f"one training step, batch {args.batch} at 3x32x32, default space, median of {args.repeats} processes")
    print(f"{'mode':<18}{'step MiB':>10}{'x single':>10}{'peak RSS MiB':>14}{'params MiB':>12}")
    for mode, r in results.items():
        ratio = r["step_mib"] / base
        print(f"{mode:<18}{r['step_mib']:>10.1f}{ratio:>10.2f}{r['peak_mib']:>14.1f}{r['params_mib']:>12.2f}")


if __name__ == "__main__":
    main()

"""How close a model's runs come to this CPU's arithmetic peak: the floor under any nasc / onnxruntime ratio.

A network whose convolutions are dense is compute bound: no compiler runs it faster than its
multiply-adds at the CPU's fused multiply-add peak. When onnxruntime already reaches a share s of that
peak, nasc / onnxruntime cannot go below s, however well nasc tunes; this bench says where that floor
lies per model, from the rows of a `bench/compile_vs_onnxruntime.py --json` run (onnxruntime's and
nasc's times, same machine, same run).

- FLOPs: the model built in torch (nasc.compiler.standard_nets), counted by torch's FlopCounterMode
  (2 per multiply-add of its convolutions and matrix products; element-wise work left out).
- Peak: a C loop of independent fused multiply-adds on vector registers (AVX-512, AVX2 or NEON as
  the compiler's -march=native allows), one copy per core at once, the sum of their rates; the
  median of --repeats. It is what the FMA units can do, not what any memory system feeds them.

Run from the repository root, after the compile bench:

    .venv/bin/python bench/compile_vs_onnxruntime.py --models resnet18-224 --budgets 0,512 --json run.json
    .venv/bin/python bench/compute_bound.py --results run.json [more.json ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

import torch
from compile_vs_onnxruntime import torch_model
from torch.utils.flop_counter import FlopCounterMode

FMA_LOOP = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#if defined(__AVX512F__)
#include <immintrin.h>
typedef __m512 vec;
#define LANES 16
#define SPLAT(x) _mm512_set1_ps(x)
#define FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define FIRST(v) _mm512_reduce_add_ps(v)
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
typedef __m256 vec;
#define LANES 8
#define SPLAT(x) _mm256_set1_ps(x)
#define FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define FIRST(v) _mm256_cvtss_f32(v)
#elif defined(__ARM_NEON)
#include <arm_neon.h>
typedef float32x4_t vec;
#define LANES 4
#define SPLAT(x) vdupq_n_f32(x)
#define FMA(a, b, c) vfmaq_f32(c, a, b)
#define FIRST(v) vgetq_lane_f32(v, 0)
#else
#error "no vector FMA on this target"
#endif
#define ACC 12

int main(int argc, char **argv) {
    long iters = atol(argv[1]);
    vec b = SPLAT(0.9999999f), c = SPLAT(1e-7f), acc[ACC];
    for (int k = 0; k < ACC; k++) acc[k] = SPLAT((float)k);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int k = 0; k < ACC; k++) acc[k] = FMA(acc[k], b, c);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    float sink = 0;
    for (int k = 0; k < ACC; k++) sink += FIRST(acc[k]);
    double secs = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
    printf("%.3f %d %g\n", 2.0 * LANES * ACC * iters / secs / 1e9, LANES, sink);
    return 0;
}
"""


def model_gflop(name: str) -> float:
    """GFLOPs of one run of model `name` (2 per multiply-add of convolutions and products): a standard
    network or an MBConv reference net, the models the compile bench builds in torch."""
    net = torch_model(name)
    if net is None:
        raise SystemExit(f"{name}: no torch source to count its FLOPs (a standard network or mbconv-N)")
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net.module(torch.zeros(net.input_shape))
    return counter.get_total_flops() / 1e9


def fma_peak_gflops(cores: int, repeats: int, iters: int) -> tuple[float, float, int]:
    """(median GFLOP/s of `cores` copies of the FMA loop run at once, the spread as max - min, lanes)."""
    with tempfile.TemporaryDirectory() as tmp:
        source, binary = Path(tmp) / "fma.c", Path(tmp) / "fma"
        source.write_text(FMA_LOOP)
        subprocess.run(["cc", "-O2", "-march=native", str(source), "-o", str(binary)], check=True)
        totals, lanes = [], 0
        for _ in range(repeats):
            copies = [subprocess.Popen([str(binary), str(iters)], stdout=subprocess.PIPE, text=True)
                      for _ in range(cores)]
            outputs = [p.communicate()[0].split() for p in copies]
            totals.append(sum(float(o[0]) for o in outputs))
            lanes = int(outputs[0][1])
    return statistics.median(totals), max(totals) - min(totals), lanes


def main() -> None:
    """Print each model's FLOPs, both runtimes' share of the peak and the ratio floor."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", nargs="+", required=True, help="JSON files of compile_vs_onnxruntime --json")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=200_000_000, help="FMA loop iterations per copy")
    args = parser.parse_args()
    rows = [r for path in args.results for r in json.loads(Path(path).read_text())]
    if not rows:
        parser.error(f"no rows in {', '.join(args.results)}")
    cores = os.cpu_count() or 1
    peak, spread, lanes = fma_peak_gflops(cores, args.repeats, args.iters)
    print(f"FMA peak: {peak:.1f} GFLOP/s on {cores} cores, {lanes}-lane vectors (spread {spread:.1f}, "
          f"{args.repeats} runs)\n")
    print(f"{'model':<20} {'budget':>6} {'GFLOP':>6} {'ort ms':>8} {'ort %peak':>9} {'nasc ms':>8} "
          f"{'nasc %peak':>10} {'nasc/ort':>8} {'floor':>6} {'0.8 needs':>10}")
    flops: dict[str, float] = {}
    for r in rows:
        name = r["model"]
        if name not in flops:
            flops[name] = model_gflop(name)
        ideal_ms = flops[name] / peak * 1e3
        ort_share, nasc_share = ideal_ms / r["onnxruntime_ms"], ideal_ms / r["nasc_ms"]
        needs = ort_share / 0.8  # nasc's share of the peak at which nasc / onnxruntime = 0.8
        print(f"{name:<20} {r['budget']:>6} {flops[name]:>6.2f} {r['onnxruntime_ms']:>8.3f} {ort_share:>9.0%} "
              f"{r['nasc_ms']:>8.3f} {nasc_share:>10.0%} {r['ratio']:>8.2f} {ort_share:>6.2f} {needs:>10.0%}")
    print("\n%peak: the model's FLOPs at the FMA peak over its measured time; floor: the lowest nasc / onnxruntime "
          "any schedule can reach (onnxruntime's share of the peak); 0.8 needs: nasc's share of the peak at which "
          "nasc / onnxruntime would be 0.8 (over 100 %: out of reach)")


if __name__ == "__main__":
    main()

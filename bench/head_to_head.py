"""Benchmark: libraries built from two or more tuning databases, timed head to head with onnxruntime.

Tuning runs from scratch differ by the luck of their search, and a shared host's speed can swing
for minutes at a time, so a change to tuning is judged by timing the libraries it gives
side by side: each round builds nothing, it times every library and then onnxruntime, each in a
fresh process with the protocol of compile_vs_onnxruntime.py, and prints the round's ratios. A ratio
formed within a round compares figures taken seconds apart. Run from the repository root:

    .venv/bin/python bench/head_to_head.py MODEL.onnx DATABASE_DIR [DATABASE_DIR ...] [--rounds 6]

A DATABASE_DIR is a tuning database folder (CACHE/tuning/llvm-...). The first is the reference:
each round also prints every other library's time over the first one's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compile_vs_onnxruntime import time_in_fresh_process

from nasc.compiler.build import build_library
from nasc.compiler.onnx_model import io_specs, load_onnx
from nasc.compiler.verify import random_inputs
from nasc.devices.registry import resolve_device


def main() -> None:
    """Build one library per database, then time them and onnxruntime in rounds."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="the ONNX file the databases were tuned for")
    parser.add_argument("databases", type=Path, nargs="+", help="tuning database folders; the first is the reference")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--number", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    if not args.model.is_file():
        parser.error(f"no ONNX file {args.model}")
    for folder in args.databases:
        if not (folder / "database_tuning_record.json").exists():
            parser.error(f"{folder} holds no database_tuning_record.json; pass a CACHE/tuning/llvm-... folder")
    specs, _ = io_specs(load_onnx(args.model), str(args.model))
    inputs = random_inputs(specs, seed=0)
    names = [s.name for s in specs]
    env = {"TVM_NUM_THREADS": str(os.cpu_count() or 1)}
    ratios: list[list[float]] = [[] for _ in args.databases]
    with tempfile.TemporaryDirectory() as tmp:
        device = resolve_device("local")
        libraries = [build_library(args.model, device, Path(tmp) / f"lib{i}.so", tuning_dir=folder)
                     for i, folder in enumerate(args.databases)]
        for round_index in range(args.rounds):
            nasc_ms = [time_in_fresh_process("tvm", lib, inputs, names, args.number, args.repeat, env=env)
                       for lib in libraries]
            ort_ms = time_in_fresh_process("ort", args.model, inputs, names, args.number, args.repeat)
            for i, ms in enumerate(nasc_ms):
                ratios[i].append(ms / ort_ms)
            against_first = " ".join(f"{ms / nasc_ms[0]:.3f}" for ms in nasc_ms[1:])
            print(f"round {round_index}: nasc ms {' '.join(f'{ms:.4f}' for ms in nasc_ms)}  ort ms {ort_ms:.4f}  "
                  f"nasc/ort {' '.join(f'{ms / ort_ms:.3f}' for ms in nasc_ms)}  against the first {against_first}",
                  flush=True)
    print()
    for folder, values in zip(args.databases, ratios, strict=True):
        print(f"{folder}: nasc/ort median {statistics.median(values):.3f} (range {min(values):.3f}-{max(values):.3f})")


if __name__ == "__main__":
    main()

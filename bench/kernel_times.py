"""Where a compiled network's time goes: each kernel its main function calls, timed alone on this CPU.

The network is lowered as `nasc compile` builds it (tuning records of `--cache` applied, the default
schedule elsewhere); each PrimFunc main calls is built on its own and timed with TVM's time_evaluator
on random arguments. The kernel sum (time per call x calls) against the whole model's time is the
time between kernels: what the VM and the thread pool cost per call, and the waits on data a kernel
timed alone finds in cache and the network's does not (docs/benchmarks.md). Run from the repository root:

    TVM_NUM_THREADS=2 .venv/bin/python bench/kernel_times.py MODEL.onnx [--cache DIR] [--top 15]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from nasc.compiler.build import kernel_calls, lower_and_apply
from nasc.compiler.frontend import import_onnx
from nasc.compiler.onnx_model import load_onnx
from nasc.compiler.target import tvm_target
from nasc.compiler.tune import database_dir_for, open_database
from nasc.devices.registry import resolve_device


@dataclass(frozen=True)
class KernelTime:
    """One kernel of the network: its name, calls per run, median microseconds per call and the
    shapes of its arguments (inputs, then the output)."""

    name: str
    calls: int
    us_per_call: float
    shapes: tuple[tuple[int, ...], ...] = ()

    @property
    def total_us(self) -> float:
        """Its share of one run of the network."""
        return self.calls * self.us_per_call


def time_kernels(onnx_path: Path, cache: Path | None, number: int, repeat: int) -> list[KernelTime]:
    """Each kernel of the network as compiled for `local`, timed alone (slowest share first)."""
    import tvm
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    device = resolve_device("local")
    target = tvm_target(device)
    database = None
    if cache is not None:  # a cache folder as `nasc compile --cache` takes it: its database for this target
        database_dir = database_dir_for(cache, target)
        database = open_database(database_dir)
        if database is None:
            raise SystemExit(f"no tuning records for this target under {cache} (looked in {database_dir}); "
                             f"pass the --cache folder the model was compiled with")
    lowered, _ = lower_and_apply(import_onnx(load_onnx(onnx_path)), device, database)
    dev = tvm.cpu()
    rng = np.random.default_rng(0)
    times = []
    for name, calls in kernel_calls(lowered).items():
        func = lowered[name].with_attr("global_symbol", "main")
        built = tvm.compile(tvm.IRModule({"main": func}), target=target)
        args, shapes = [], []
        for info in ArgInfo.from_prim_func(func):
            shape, dtype = [int(d) for d in info.shape], str(info.dtype)
            shapes.append(tuple(shape))
            if dtype.startswith("int"):  # index tables (channel gathers): zeros read element 0
                args.append(tvm.runtime.tensor(np.zeros(shape, dtype=dtype), dev))
            else:
                args.append(tvm.runtime.tensor(rng.standard_normal(shape).astype(dtype), dev))
        timer = built.jit().time_evaluator("main", dev, number=number, repeat=repeat, min_repeat_ms=0)
        us = float(np.median(np.array(timer(*args).results))) * 1e6
        times.append(KernelTime(name, calls, us, tuple(shapes)))
    return sorted(times, key=lambda k: -k.total_us)


def main() -> None:
    """Print the kernels, slowest share first, and their sum; --json writes them."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("onnx", type=Path)
    parser.add_argument("--cache", type=Path, default=None,
                        help="the cache folder the model was compiled with (nasc compile --cache)")
    parser.add_argument("--number", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    times = time_kernels(args.onnx, args.cache, args.number, args.repeat)
    total = sum(k.total_us for k in times)
    for k in times[:args.top]:
        print(f"{k.total_us:10.1f} us {100 * k.total_us / total:5.1f} %  {k.calls:3d} x {k.us_per_call:9.1f}  {k.name}")
    print(f"kernel sum {total / 1e3:.3f} ms over {sum(k.calls for k in times)} calls, {len(times)} kernels")
    if args.json:
        args.json.write_text(json.dumps([asdict(k) for k in times], indent=2))


if __name__ == "__main__":
    main()

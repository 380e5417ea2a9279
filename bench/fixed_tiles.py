"""Which untuned register tile suits this CPU: the dense convolutions of standard networks, each
scheduled with several fixed-tile rules and timed alone.

For every dense blocked convolution task of each model (as `nasc compile` lowers it for `local`),
the task gets the space's fixed schedule with each rule's tile and is timed with TVM's
time_evaluator (TVM_NUM_THREADS at the cores); the table sums time x the task's weight per model,
and the ratio of each rule to nasc's own `default_tile`. Rules:

- `nasc`: blocked_conv_space.default_tile as it is;
- `blocks-A`: up to 4 channel blocks that divide, then columns up to A accumulators (AVX2's rule at 8);
- `columns-C-A`: up to C columns, then channel blocks while the tile stays at A accumulators.

Run from the repository root:

    .venv/bin/python bench/fixed_tiles.py [--models resnet18-224,resnet50-96] [--rules nasc,blocks-16,columns-6-12]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np

from nasc.compiler import blocked_conv_space
from nasc.compiler.blocked_conv_space import (
    RegisterBudget,
    blocked_conv_block,
    blocks_first_tile,
    columns_first_tile,
    default_tile,
)
from nasc.compiler.build import lower_for_tuning
from nasc.compiler.export import export_onnx
from nasc.compiler.frontend import import_onnx
from nasc.compiler.onnx_model import load_onnx
from nasc.compiler.standard_nets import standard_net
from nasc.compiler.target import tvm_target
from nasc.devices.registry import resolve_device

TileRule = Callable[..., RegisterBudget]


def blocks_first(accumulators: int) -> TileRule:
    """Up to 4 channel blocks (dividing the count), then columns up to `accumulators` (AVX2's rule at 8)."""
    def rule(channel_blocks: int, width: int, lanes: int, *, depthwise: bool) -> RegisterBudget:
        if depthwise:
            return default_tile(channel_blocks, width, lanes, depthwise=True)
        return blocks_first_tile(channel_blocks, width, accumulators)
    return rule


def columns_first(columns: int, accumulators: int) -> TileRule:
    """Up to `columns` columns, then channel blocks while the tile holds at most `accumulators`."""
    def rule(channel_blocks: int, width: int, lanes: int, *, depthwise: bool) -> RegisterBudget:
        if depthwise:
            return default_tile(channel_blocks, width, lanes, depthwise=True)
        return columns_first_tile(channel_blocks, width, columns, accumulators)
    return rule


def parse_rule(name: str) -> TileRule:
    """`nasc`, `blocks-A` or `columns-C-A` (see the module's doc)."""
    parts = name.split("-")
    if name == "nasc":
        return default_tile
    if parts[0] == "blocks" and len(parts) == 2:
        return blocks_first(int(parts[1]))
    if parts[0] == "columns" and len(parts) == 3:
        return columns_first(int(parts[1]), int(parts[2]))
    raise SystemExit(f"--rules: unknown rule {name!r}; use nasc, blocks-A or columns-C-A")


def conv_tasks(model: str, target) -> list:
    """The dense blocked convolution tasks of a standard network, as compile lowers it."""
    from tvm.s_tir.meta_schedule.relax_integration import extract_tasks

    ref = standard_net(model)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(ref.module, ref.input_shape, Path(tmp) / f"{model}.onnx").onnx_path
        mod = lower_for_tuning(import_onnx(load_onnx(onnx_path)), target)
    return [t for t in extract_tasks(mod, target) if blocked_conv_block(t.dispatched[0]) == "conv2d_nchwc"]


def time_task(task, rule: TileRule, target, number: int, repeat: int) -> float:
    """Microseconds per run of the task with `rule`'s fixed tile, times its weight."""
    import tvm
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    mod = task.dispatched[0]
    with mock.patch.object(blocked_conv_space, "default_tile", rule):
        sch = blocked_conv_space.fixed_conv_schedule(mod)
    if sch is None:
        raise SystemExit(f"{task.task_name}: the fixed convolution schedule does not apply")
    dev = tvm.cpu()
    rng = np.random.default_rng(0)
    args = [tvm.runtime.tensor(rng.standard_normal([int(d) for d in info.shape]).astype(str(info.dtype)), dev)
            for info in ArgInfo.from_prim_func(sch.mod["main"])]
    built = tvm.compile(sch.mod, target=target)
    timer = built.jit().time_evaluator("main", dev, number=number, repeat=repeat, min_repeat_ms=20)
    return statistics.median(timer(*args).results) * 1e6 * int(task.weight)


def main() -> None:
    """Time every rule on every model's convolutions and print the weighted sums."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet18-224,resnet50-224,resnet50-96")
    parser.add_argument("--rules", default="nasc,blocks-16,blocks-8,columns-6-12")
    parser.add_argument("--number", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))
    rules = {name: parse_rule(name) for name in args.rules.split(",")}
    target = tvm_target(resolve_device("local"))
    print(f"target {target}; weighted microseconds of the dense convolutions per run; ratio to `nasc`")
    print(f"{'model':<20} {'tasks':>5} " + " ".join(f"{name:>18}" for name in rules))
    for model in args.models.split(","):
        tasks = conv_tasks(model, target)
        sums = {name: sum(time_task(t, rule, target, args.number, args.repeat) for t in tasks)
                for name, rule in rules.items()}
        base = sums.get("nasc") or next(iter(sums.values()))
        print(f"{model:<20} {len(tasks):>5} " + " ".join(f"{sums[n]:>10.0f} ({sums[n] / base:4.2f})" for n in rules),
              flush=True)


if __name__ == "__main__":
    main()

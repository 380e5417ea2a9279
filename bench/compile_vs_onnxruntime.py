"""Benchmark: nasc-compiled artifacts vs onnxruntime on this machine, at several tuning budgets.

For each model and each total trial budget (budget // tasks trials per task on average, spread by
MetaSchedule's gradient scheduler, and cumulative: a larger budget tunes only the difference, as
`nasc compile` does), compile for
`local`, then time the artifact and onnxruntime in the same run with the same protocol
(a warm-up of at least WARMUP_S seconds, then `repeat` medians of `number` runs, each side in a
fresh process). Prints a
table of ratios nasc / onnxruntime (< 1.0: nasc is faster); nasc runs with TVM_NUM_THREADS set
to the cores, the onnxruntime figure is the faster of its default threading and one thread.
Each level is timed in `--rounds` rounds, both sides back to back, and the ratio reported is the
median of the rounds' ratios (with their range). `--kernel-sum` also times each kernel alone
(bench/kernel_times.py): the whole model minus their sum is what runs cost between kernels (calls, and
data no longer in cache). Run from the repository root:

    .venv/bin/python bench/compile_vs_onnxruntime.py [--budgets 0,64,256,1024] [--models ...]

Models: mbconv-RES, the standard architectures of nasc.compiler.standard_nets as NAME-RES (resnet18-224,
resnet50-96, mobilenetv2-224, shufflenetv2-224, inception-96, efficientnet-b0-224, ...), or a light model
of the onnx package (squeezenet).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nasc.compiler.build import lower_for_tuning
from nasc.compiler.export import export_onnx
from nasc.compiler.frontend import import_onnx
from nasc.compiler.onnx_model import io_specs, load_onnx
from nasc.compiler.reference_nets import ReferenceNet, mbconv_reference
from nasc.compiler.settings import CompileSettings
from nasc.compiler.standard_nets import STANDARD_NETS, standard_net
from nasc.compiler.target import tvm_target
from nasc.compiler.verify import random_inputs
from nasc.devices.registry import resolve_device
from nasc.pipeline.compile import compile_onnx

ONNX_TEST_DATA = Path(__import__("onnx").__file__).parent / "backend" / "test" / "data" / "light"


def torch_model(name: str) -> ReferenceNet | None:
    """The model `name` built in torch: a reference MBConv net (mbconv-96) or a standard architecture
    (resnet18-224, shufflenetv2-96, ...); None for any other name."""
    if name.startswith("mbconv-"):
        return mbconv_reference(int(name.split("-")[1]))
    if name in STANDARD_NETS or name.rpartition("-")[0] in STANDARD_NETS:
        return standard_net(name)
    return None


def model_files(names: list[str], workdir: Path) -> dict[str, Path]:
    """The models of :func:`torch_model` exported here, plus light models from the onnx package."""
    files: dict[str, Path] = {}
    for name in names:
        ref = torch_model(name)
        if ref is not None:
            files[name] = Path(export_onnx(ref.module, ref.input_shape, workdir / f"{name}.onnx").onnx_path)
        else:
            path = ONNX_TEST_DATA / f"light_{name}.onnx"
            if not path.exists():
                sys.exit(f"no model {path}; available: {sorted(p.stem for p in ONNX_TEST_DATA.glob('light_*.onnx'))}")
            files[name] = path
    return files


def count_tasks(onnx_path: Path) -> int:
    """How many tuning tasks MetaSchedule extracts from the model for `local`."""
    from tvm.s_tir.meta_schedule.relax_integration import extract_tasks

    target = tvm_target(resolve_device("local"))
    mod = lower_for_tuning(import_onnx(load_onnx(onnx_path)), target)
    return len([t for t in extract_tasks(mod, target) if not t.mod.attrs.get("tirx.is_scheduled", False)])


def untuned_kept(onnx_path: Path, database_dir: Path) -> int:
    """Operators whose applied record is their untuned schedule (it timed faster than every tuned one)."""
    import tvm
    from tvm_ffi import structural_equal

    from nasc.compiler.build import apply_database
    from nasc.compiler.tune import open_database

    target = tvm_target(resolve_device("local"))
    lowered = lower_for_tuning(import_onnx(load_onnx(onnx_path)), target)
    tuned, _ = apply_database(lowered, target, open_database(database_dir))
    return sum(
        1 for gv, func in tuned.functions.items()
        if isinstance(func, tvm.tirx.PrimFunc) and func.attrs is not None and func.attrs.get("tirx.is_scheduled", False)
        and structural_equal(func.body, lowered[gv.name_hint].body)
    )


# Each side runs this long before it is timed. In a fresh process TVM's first runs (for a few tens
# of milliseconds) can be much slower than the rest, and all of the protocol's timed runs of a small
# model can fall inside that window: warm up by time, not count.
WARMUP_S = 0.25


def warm_up(run: Callable[[], object], number: int) -> None:
    """Call `run` at least `number` times and for at least WARMUP_S seconds."""
    deadline = time.perf_counter() + WARMUP_S
    done = 0
    while done < number or time.perf_counter() < deadline:
        run()
        done += 1


def time_tvm(library: Path, inputs: list[np.ndarray], number: int, repeat: int) -> float:
    """Median ms per run of the library's main, TVM's time_evaluator on this CPU."""
    import tvm
    from tvm import relax

    dev = tvm.cpu()
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), dev)
    vm.set_input("main", *[tvm.runtime.tensor(x, dev) for x in inputs])
    warm_up(lambda: vm.invoke_stateful("main"), number)
    timer = vm.time_evaluator("invoke_stateful", dev, number=number, repeat=repeat, min_repeat_ms=0)
    return float(np.median(np.array(timer("main").results))) * 1e3


def time_ort(onnx_path: Path, names: list[str], inputs: list[np.ndarray], number: int, repeat: int,
             threads: int = 0) -> float:
    """Median ms per run of onnxruntime (CPU provider; 0 threads = its default) with the same protocol."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    feed = dict(zip(names, inputs, strict=True))
    warm_up(lambda: session.run(None, feed), number)
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            session.run(None, feed)
        samples.append((time.perf_counter() - start) / number)
    return statistics.median(samples) * 1e3


def time_in_fresh_process(kind: str, path: Path, inputs: list[np.ndarray], names: list[str], number: int,
                          repeat: int, threads: int = 0, env: dict[str, str | None] | None = None) -> float:
    """Median ms of `kind` ("tvm" or "ort") timed in a new interpreter, as a deployed program runs it.

    Timed in the benchmark's own process, right after tuning, the same library measured slower than
    in a fresh process (left-over worker and cost-model threads), so both sides are timed fresh.
    `env` changes the child's environment (None removes a variable).
    """
    import subprocess

    child_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            child_env.pop(key, None)
        else:
            child_env[key] = value

    with tempfile.TemporaryDirectory() as tmp:
        feed = Path(tmp) / "inputs.npz"
        np.savez(feed, **{f"x{i}": x for i, x in enumerate(inputs)})
        out = subprocess.run(
            [sys.executable, __file__, "--time", kind, str(path), str(feed), ",".join(names), str(number),
             str(repeat), str(threads)],
            capture_output=True, text=True, check=True, timeout=600, env=child_env,
        )
    return float(out.stdout.strip().splitlines()[-1])


def kernel_sum_ms(onnx_path: Path, cache: Path | None) -> float:
    """The network's kernels timed alone and summed (bench/kernel_times.py, in a fresh process with
    TVM_NUM_THREADS at the cores)."""
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "kernels.json"
        command = [sys.executable, str(Path(__file__).with_name("kernel_times.py")), str(onnx_path), "--json", str(out)]
        if cache is not None:
            command += ["--cache", str(cache)]
        subprocess.run(command, capture_output=True, text=True, check=True, timeout=1800,
                       env={**os.environ, "TVM_NUM_THREADS": str(os.cpu_count() or 1)})
        return sum(k["calls"] * k["us_per_call"] for k in json.loads(out.read_text())) / 1e3


@dataclass(frozen=True)
class TimingRound:
    """One round: nasc, then onnxruntime with its default threading and with one thread, back to back."""

    nasc_ms: float
    ort_default_ms: float
    ort_single_ms: float

    @property
    def ort_ms(self) -> float:
        """onnxruntime at its best in this round (its default threading swings on a shared host)."""
        return min(self.ort_default_ms, self.ort_single_ms)

    @property
    def ratio(self) -> float:
        """nasc / onnxruntime within this round."""
        return self.nasc_ms / self.ort_ms


def time_round(library: Path, onnx_path: Path, inputs: list[np.ndarray], names: list[str], number: int,
               repeat: int) -> TimingRound:
    """Time both sides back to back, each in a fresh process.

    A shared host can run multi-threaded programs much slower for minutes at a time; figures taken
    seconds apart are mostly in the same mode, so ratios are formed within a round and
    the benchmark reports their median, never a ratio of a slowed figure to a normal one.
    """
    nasc_ms = time_in_fresh_process("tvm", library, inputs, names, number, repeat,
                                    env={"TVM_NUM_THREADS": str(os.cpu_count() or 1)})
    ort_default_ms = time_in_fresh_process("ort", onnx_path, inputs, names, number, repeat)
    ort_single_ms = time_in_fresh_process("ort", onnx_path, inputs, names, number, repeat, threads=1)
    return TimingRound(nasc_ms, ort_default_ms, ort_single_ms)


def _time_command(argv: list[str]) -> None:
    """--time KIND PATH INPUTS.npz NAMES NUMBER REPEAT THREADS: print the median ms."""
    kind, path, feed, names, number, repeat, threads = argv
    data = np.load(feed)
    inputs = [data[f"x{i}"] for i in range(len(data.files))]
    if kind == "tvm":
        print(time_tvm(Path(path), inputs, int(number), int(repeat)))
    else:
        print(time_ort(Path(path), names.split(","), inputs, int(number), int(repeat), threads=int(threads)))


def main() -> None:
    """Run the benchmark and print the ratio table."""
    if sys.argv[1:2] == ["--time"]:
        _time_command(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mbconv-32,mbconv-96,squeezenet")
    parser.add_argument("--budgets", default="0,64,256,1024", help="total trials per model")
    parser.add_argument("--number", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3,
                        help="timing rounds per level, each nasc then onnxruntime back to back; the ratio is "
                             "the median of the rounds' ratios")
    parser.add_argument("--cache", default=None, help="tuning cache (default: a fresh temporary folder)")
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    parser.add_argument("--kernel-sum", action="store_true",
                        help="also time each kernel alone: kernel sum and the time between kernels (whole - sum)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    budgets = sorted(int(b) for b in args.budgets.split(","))
    local = resolve_device("local")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        cache = Path(args.cache) if args.cache else workdir / "cache"
        for name, path in model_files(args.models.split(","), workdir).items():
            tasks = count_tasks(path)
            inputs_spec, _ = io_specs(load_onnx(path), str(path))
            inputs = random_inputs(inputs_spec, seed=0)
            names = [s.name for s in inputs_spec]
            for budget in budgets:
                per_task = 0 if budget == 0 else max(1, budget // tasks)
                settings = CompileSettings(trials=per_task)
                started = time.perf_counter()
                # Budget 0 means untuned: an empty database, since compile applies any records it has.
                level_cache = workdir / "untuned-cache" if budget == 0 else cache
                artifact = compile_onnx(path, local, settings, workdir / f"{name}-{budget}", level_cache)
                compile_s = time.perf_counter() - started
                # With TVM_NUM_THREADS unset, TVM's pool can use fewer threads than there are cores (one
                # on a 2-core x86 host); a deployment sets it to its cores. Both figures are recorded.
                lib = artifact.library_path
                nasc_default_ms = time_in_fresh_process("tvm", lib, inputs, names, args.number, args.repeat,
                                                        env={"TVM_NUM_THREADS": None})
                timings = [time_round(lib, path, inputs, names, args.number, args.repeat) for _ in range(args.rounds)]
                ratios = [t.ratio for t in timings]
                nasc_ms = statistics.median(t.nasc_ms for t in timings)
                ort_ms = statistics.median(t.ort_ms for t in timings)
                row = {
                    "model": name, "tasks": tasks, "budget": budget, "trials_per_task": per_task,
                    "new_trials": artifact.tuning.trials_run, "tasks_reused": artifact.tuning.tasks_reused,
                    "compile_s": round(compile_s, 1),
                    "nasc_ms": round(nasc_ms, 4), "nasc_tvm_default_threads_ms": round(nasc_default_ms, 4),
                    "onnxruntime_ms": round(ort_ms, 4),
                    "onnxruntime_default_threads_ms": round(statistics.median(t.ort_default_ms for t in timings), 4),
                    "onnxruntime_1_thread_ms": round(statistics.median(t.ort_single_ms for t in timings), 4),
                    "ratio": round(statistics.median(ratios), 2),
                    "ratio_range": [round(min(ratios), 2), round(max(ratios), 2)],
                    "rounds": [[round(t.nasc_ms, 4), round(t.ort_default_ms, 4), round(t.ort_single_ms, 4)]
                               for t in timings],
                    "max_abs_err": artifact.parity.max_abs_err,
                    "kernels": artifact.kernels.to_dict() if artifact.kernels is not None else None,
                    "untuned_kept": untuned_kept(path, Path(artifact.tuning.database_dir))
                    if budget and artifact.tuning.database_dir else 0,
                }
                if args.kernel_sum:
                    row["kernel_sum_ms"] = round(kernel_sum_ms(path, None if budget == 0 else cache), 4)
                    row["overhead_ms"] = round(nasc_ms - row["kernel_sum_ms"], 4)
                rows.append(row)
                print(json.dumps(row), flush=True)
    print()
    print(f"{'model':<20} {'tasks':>5} {'budget':>6} {'/task':>5} {'trials':>6} {'reused':>6} "
          f"{'compile s':>9} {'nasc ms':>9} "
          f"{'ort ms':>8} {'nasc/ort':>8} {'range':>11} {'untuned kept':>12} {'calls':>5} {'layout':>6} "
          f"{'kernels ms':>10} {'between ms':>10}")
    for r in rows:
        kernels = r["kernels"] or {}
        print(f"{r['model']:<20} {r['tasks']:>5} {r['budget']:>6} {r['trials_per_task']:>5} "
              f"{r['new_trials']:>6} {r['tasks_reused']:>6} {r['compile_s']:>9} "
              f"{r['nasc_ms']:>9.4f} {r['onnxruntime_ms']:>8.4f} {r['ratio']:>8.2f} "
              f"{r['ratio_range'][0]:>5.2f}-{r['ratio_range'][1]:<5.2f} {r['untuned_kept']:>12} "
              f"{kernels.get('calls', '-'):>5} {kernels.get('layout_transform_calls', '-'):>6} "
              f"{r.get('kernel_sum_ms', '-'):>10} {r.get('overhead_ms', '-'):>10}")
    print(f"\ncpu: {os.cpu_count()} cores (nasc timed with TVM_NUM_THREADS={os.cpu_count()}); medians of "
          f"{args.repeat} x {args.number} runs, each side in a fresh process; {args.rounds} rounds per level, "
          f"ratio = median of the rounds' ratios (range: lowest-highest); ratio < 1: nasc faster; trials: new "
          f"trials this compile spent, reused: tasks an earlier model of the run (one tuning cache) had tuned "
          f"at this level or higher, which spend none; calls: kernel "
          f"calls per run, layout: those that change the layout (compile.json kernels); kernels ms: each kernel "
          f"timed alone x its calls, summed; between ms: whole model - kernel sum (calls, and data no longer in cache)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

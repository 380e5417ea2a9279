"""Where a model's time goes, layer by layer: nasc's convolution kernels against onnxruntime's nodes.

nasc: each kernel of the compiled network timed alone on this CPU (bench/kernel_times.py; the tuning
records of --cache applied, the untuned schedule elsewhere). onnxruntime: its own per-node profile of
whole runs (SessionOptions.enable_profiling; each node's median duration after a warm-up).

Convolutions are matched by signature: kind (dense, depthwise, grouped), kernel size, stride, output
map and channel counts. nasc pads channel counts up to its channel block, so a nasc signature takes the
onnxruntime nodes whose counts pad to its own. Several layers of a network can share a signature: each
row is one signature, with its calls per run on either side. Everything besides convolutions
(layout changes, pooling, element-wise kernels, the classifier) is one "other" row per side. With
--peak (GFLOP/s, as bench/compute_bound.py measures it) each row also gives both sides' share of it.

What the table can and cannot say: a kernel timed alone finds its data in cache, while a profiled
node runs inside the network (and profiling adds a little to every node), so the rows say which
layers to look at; the whole-model ratio is bench/compile_vs_onnxruntime.py's to measure. Run from
the repository root:

    TVM_NUM_THREADS=2 .venv/bin/python bench/layer_compare.py MODEL.onnx [--cache DIR] [--peak 232.5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from kernel_times import KernelTime, time_kernels


@dataclass(frozen=True)
class ConvSignature:
    """What makes two convolutions the same kernel: channels in and out, output map, kernel, stride, kind."""

    kind: str  # "dense", "depthwise" or "grouped"
    in_channels: int
    out_channels: int
    height: int  # of the output
    width: int
    kernel: tuple[int, int]
    stride: int

    def label(self) -> str:
        """E.g. "3x3/2 dense 64->128 @28x28"."""
        stride = f"/{self.stride}" if self.stride > 1 else ""
        return (f"{self.kernel[0]}x{self.kernel[1]}{stride} {self.kind} {self.in_channels}->{self.out_channels} "
                f"@{self.height}x{self.width}")

    def flops(self) -> int:
        """2 per multiply-add."""
        per_output = self.kernel[0] * self.kernel[1] * (1 if self.kind == "depthwise" else self.in_channels)
        return 2 * self.height * self.width * self.out_channels * per_output

    def covers(self, other: ConvSignature) -> bool:
        """True when `other` (onnxruntime's, true channel counts) pads to this one (nasc's)."""
        return (self.kind, self.height, self.width, self.kernel, self.stride) == (
            other.kind, other.height, other.width, other.kernel, other.stride
        ) and all(0 <= mine - theirs < 16 for mine, theirs in (
            (self.in_channels, other.in_channels), (self.out_channels, other.out_channels)))


def nasc_signature(kernel: KernelTime) -> ConvSignature | None:
    """The signature of a nasc convolution kernel from its argument shapes (None for any other kernel).

    Data is blocked [1, C/c, H, W, c] (or NCHW for a stem), the weight [O/o, C/c, kh, kw, c, o] (depthwise
    [C/c, kh, kw, c]), the output [1, O/o, H, W, o]."""
    if "conv2d_nchwc" not in kernel.name or len(kernel.shapes) < 3:
        return None
    data, weight, out = kernel.shapes[0], kernel.shapes[1], kernel.shapes[-1]
    in_channels = data[1] * data[4] if len(data) == 5 else data[1]
    depthwise = "depthwise" in kernel.name
    kernel_hw = (weight[1], weight[2]) if depthwise else (weight[2], weight[3])
    return ConvSignature("depthwise" if depthwise else "dense", in_channels, out[1] * out[4], out[2], out[3],
                         kernel_hw, max(1, round(data[2] / out[2])))


def ort_signature(inputs: list[list[int]], output: list[int]) -> ConvSignature:
    """The signature of an onnxruntime Conv node from its profiled input and output shapes (NCHW)."""
    data, weight = inputs[0], inputs[1]
    groups = data[1] // weight[1]
    kind = "dense" if groups == 1 else "depthwise" if groups == data[1] == output[1] else "grouped"
    return ConvSignature(kind, data[1], output[1], output[2], output[3], (weight[2], weight[3]),
                         max(1, round(data[2] / output[2])))


@dataclass(frozen=True)
class NodeTime:
    """One onnxruntime node: its op, median microseconds per run, and its signature if a convolution."""

    name: str
    op: str
    us: float
    signature: ConvSignature | None


def profile_ort(onnx_path: Path, threads: int, runs: int, warmup: int) -> list[NodeTime]:
    """onnxruntime's nodes of `runs` profiled runs (after `warmup` ones) of random input."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        feed = {i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
                for i in session.get_inputs()}
        for _ in range(warmup + runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    return nodes_from_profile(events, warmup)


def nodes_from_profile(events: list[dict], warmup: int) -> list[NodeTime]:
    """The nodes of an onnxruntime profile (its JSON events), each at its median duration over the runs
    after the first `warmup`."""
    durations: dict[str, list[float]] = defaultdict(list)
    meta: dict[str, tuple[str, ConvSignature | None]] = {}
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        name, args = event["name"].removesuffix("_kernel_time"), event["args"]
        durations[name].append(float(event["dur"]))
        if name not in meta:
            signature = None
            if args.get("op_name") == "Conv":
                shapes = [next(iter(s.values())) for s in args["input_type_shape"]]
                signature = ort_signature(shapes, next(iter(args["output_type_shape"][0].values())))
            meta[name] = (args.get("op_name", "?"), signature)
    return [NodeTime(name, meta[name][0], statistics.median(d[warmup:] or d), meta[name][1])
            for name, d in durations.items()]


@dataclass(frozen=True)
class LayerRow:
    """One signature (or "other"): calls and microseconds per run on each side."""

    label: str
    flops: int
    nasc_calls: int
    nasc_us: float
    ort_calls: int
    ort_us: float


def compare(kernels: list[KernelTime], nodes: list[NodeTime]) -> list[LayerRow]:
    """Rows per convolution signature (nasc's, with the onnxruntime nodes it covers), then the unmatched
    onnxruntime convolutions, then "other" for each side; slowest nasc share first."""
    nasc: dict[ConvSignature, list[KernelTime]] = defaultdict(list)
    nasc_other, nasc_other_calls = 0.0, 0
    for k in kernels:
        signature = nasc_signature(k)
        if signature is None:
            nasc_other += k.total_us
            nasc_other_calls += k.calls
        else:
            nasc[signature].append(k)
    matched: dict[ConvSignature, list[NodeTime]] = defaultdict(list)
    unmatched: dict[ConvSignature, list[NodeTime]] = defaultdict(list)
    ort_other = 0.0
    for node in nodes:
        if node.signature is None:
            ort_other += node.us
            continue
        owner = next((s for s in nasc if s.covers(node.signature)), None)
        (matched[owner] if owner is not None else unmatched[node.signature]).append(node)
    rows = []
    for signature, ks in nasc.items():
        ns = matched.get(signature, [])
        flops = ns[0].signature.flops() if ns else signature.flops()
        rows.append(LayerRow(signature.label(), flops, sum(k.calls for k in ks), sum(k.total_us for k in ks),
                             len(ns), sum(n.us for n in ns)))
    rows.sort(key=lambda r: -r.nasc_us)
    rows += [LayerRow(s.label(), s.flops(), 0, 0.0, len(ns), sum(n.us for n in ns)) for s, ns in unmatched.items()]
    rows.append(LayerRow("other (not convolutions)", 0, nasc_other_calls, nasc_other,
                         sum(1 for n in nodes if n.signature is None), ort_other))
    return rows


def print_table(rows: list[LayerRow], peak: float | None) -> None:
    """The rows, per call and per run, and the totals."""
    share = f"{'nasc % pk':>9} {'ort % pk':>8}" if peak else ""
    print(f"{'layer':<40} {'MFLOP':>7} {'calls':>9} {'nasc us':>9} {'ort us':>9} {'nasc/ort':>8} {share}")
    for r in rows:
        per_nasc = r.nasc_us / r.nasc_calls if r.nasc_calls else None
        per_ort = r.ort_us / r.ort_calls if r.ort_calls else None
        ratio = f"{per_nasc / per_ort:8.2f}" if per_nasc and per_ort else f"{'-':>8}"
        cells = ""
        if peak and r.flops:
            cells = " ".join(f"{100 * r.flops / (t * 1e3) / peak:>8.0f}%" if t else f"{'-':>9}"
                             for t in (per_nasc, per_ort))
        print(f"{r.label:<40} {r.flops / 1e6 if r.flops else 0:>7.0f} {r.nasc_calls:>4}/{r.ort_calls:<4} "
              f"{per_nasc or 0:>9.1f} {per_ort or 0:>9.1f} {ratio} {cells}")
    nasc_total, ort_total = sum(r.nasc_us for r in rows), sum(r.ort_us for r in rows)
    print(f"per run: nasc kernels {nasc_total / 1e3:.3f} ms (each timed alone), onnxruntime nodes "
          f"{ort_total / 1e3:.3f} ms (profiled in the network); us are per call, calls nasc/onnxruntime")


def main() -> None:
    """Time both sides and print the table; --json writes the rows."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("onnx", type=Path)
    parser.add_argument("--cache", type=Path, default=None,
                        help="the cache folder the model was compiled with (nasc compile --cache)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="onnxruntime's intra-op threads")
    parser.add_argument("--runs", type=int, default=30, help="profiled onnxruntime runs (after --warmup)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--peak", type=float, default=None, help="the FMA peak in GFLOP/s, for shares of it")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not args.onnx.is_file():
        parser.error(f"no ONNX file {args.onnx}")
    kernels = time_kernels(args.onnx, args.cache, number=10, repeat=5)
    rows = compare(kernels, profile_ort(args.onnx, args.threads, args.runs, args.warmup))
    print_table(rows, args.peak)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))


if __name__ == "__main__":
    main()

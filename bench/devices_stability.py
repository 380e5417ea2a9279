"""Measurement stability on `local`: repeated measurements of one model, TVM over RPC vs onnxruntime (peer).

Each of --measurements rounds takes one full oracle measurement (warm-up, repeat x number) of the same
compiled library through one local RPC session, and one onnxruntime measurement with the same protocol
in this process. Reported: the within-measurement CV / robust CV (medians over rounds) and the
between-round CV of the medians: the figure that says how reproducible a table entry is.

    .venv/bin/python bench/devices_stability.py [--model examples/mbconv-32.onnx] [--measurements 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from nasc.compiler.build import build_library
from nasc.compiler.onnx_model import io_specs, load_onnx
from nasc.compiler.verify import random_inputs
from nasc.devices.oracle import stats_ms
from nasc.devices.registry import resolve_device
from nasc.devices.rpc import SessionSource
from nasc.devices.settings import MeasureSettings
from nasc.pipeline.latency_table_build import measure_library_on

REPO = Path(__file__).resolve().parents[1]


def ort_measurement(model: Path, inputs: list[np.ndarray], settings: MeasureSettings) -> list[float]:
    """The oracle's protocol with onnxruntime: warm-up, then `repeat` means of `number` runs (ms)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: inputs[0]}
    for _ in range(settings.warmup):
        session.run(None, feed)
    runs = []
    for _ in range(settings.repeat):
        start = time.perf_counter()
        for _ in range(settings.number):
            session.run(None, feed)
        runs.append((time.perf_counter() - start) * 1e3 / settings.number)
    return runs


def cv(values: list[float]) -> float:
    return statistics.stdev(values) / statistics.mean(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "examples" / "mbconv-32.onnx")
    parser.add_argument("--measurements", type=int, default=10)
    args = parser.parse_args()
    settings = MeasureSettings()
    device = resolve_device("local")
    inputs_spec, _ = io_specs(load_onnx(args.model), str(args.model))
    inputs = random_inputs(inputs_spec, 0)
    with tempfile.TemporaryDirectory(prefix="nasc-bench-stab-") as tmp:
        lib = build_library(args.model, device, Path(tmp) / "model.so")
        tvm_rounds, ort_rounds = [], []
        with SessionSource(device, Path(tmp), settings) as source:
            worker = source.worker()
            for i in range(args.measurements):
                m = worker.run(lambda s: measure_library_on(s, lib, inputs, args.model.name, settings))
                o = stats_ms(ort_measurement(args.model, inputs, settings))
                tvm_rounds.append(m)
                ort_rounds.append(o)
                print(f"round {i}: tvm median {m.median_ms:.4f} ms CV {m.cv:5.1%} robust {m.robust_cv:5.1%} "
                      f"attempts {m.attempts}{' NOISY' if m.noisy else ''} | onnxruntime median "
                      f"{o['median_ms']:.4f} ms CV {o['cv']:5.1%} robust {o['robust_cv']:5.1%}", flush=True)
    t_meds = [m.median_ms for m in tvm_rounds]
    o_meds = [o["median_ms"] for o in ort_rounds]
    print(f"\n{args.model.name}, {args.measurements} measurements of {settings.repeat} x {settings.number} runs:")
    print(f"  TVM over RPC : within-measurement CV (median) {statistics.median(m.cv for m in tvm_rounds):.1%}, "
          f"robust CV {statistics.median(m.robust_cv for m in tvm_rounds):.1%}; between-measurement CV of medians "
          f"{cv(t_meds):.1%}; noisy {sum(m.noisy for m in tvm_rounds)}/{len(tvm_rounds)}")
    print(f"  onnxruntime  : within-measurement CV (median) {statistics.median(o['cv'] for o in ort_rounds):.1%}, "
          f"robust CV {statistics.median(o['robust_cv'] for o in ort_rounds):.1%}; between-measurement CV of "
          f"medians {cv(o_meds):.1%}")
    print(f"  ratio of between-measurement CVs (TVM/onnxruntime): {cv(t_meds) / cv(o_meds):.2f}")


if __name__ == "__main__":
    main()

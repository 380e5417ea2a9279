"""Parity: run the built artifact and onnxruntime on the same random inputs and compare."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nasc.errors import ParityError
from nasc.tensors import TensorSpec

Runner = Callable[[list[np.ndarray]], list[np.ndarray]]


@dataclass(frozen=True)
class ParityReport:
    """How the artifact compared with onnxruntime."""

    checked: bool
    where: str
    samples: int = 0
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    atol: float = 0.0
    rtol: float = 0.0
    passed: bool = False
    worst_output: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParityReport:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)

    @classmethod
    def not_checked(cls, reason: str) -> ParityReport:
        """A report saying why no check ran."""
        return cls(checked=False, where=reason)


def random_inputs(specs: Sequence[TensorSpec], seed: int) -> list[np.ndarray]:
    """Deterministic inputs: standard normal for floats, small non-negative integers otherwise."""
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in specs:
        dtype = np.dtype(spec.dtype)
        if np.issubdtype(dtype, np.floating):
            arrays.append(rng.standard_normal(spec.shape).astype(dtype))
        elif dtype == np.bool_:
            arrays.append(rng.integers(0, 2, spec.shape).astype(dtype))
        else:
            arrays.append(rng.integers(0, 10, spec.shape).astype(dtype))
    return arrays


def onnxruntime_runner(onnx_path: str | Path, input_specs: Sequence[TensorSpec]) -> Runner:
    """A runner that evaluates the ONNX file with onnxruntime on the CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    names = [s.name for s in input_specs]

    def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(o) for o in session.run(None, dict(zip(names, inputs, strict=True)))]

    return run


def compare_outputs(
    got: Sequence[np.ndarray], want: Sequence[np.ndarray], names: Sequence[str], atol: float, rtol: float
) -> tuple[float, float, str, bool]:
    """Max abs error, max relative error, worst output name, and whether all are within tolerance."""
    if len(got) != len(want):
        raise ParityError(f"the artifact returned {len(got)} outputs, onnxruntime {len(want)}")
    max_abs, max_rel, worst, ok = 0.0, 0.0, "", True
    for name, a, b in zip(names, got, want, strict=True):
        if a.shape != b.shape:
            raise ParityError(f"output '{name}': artifact shape {a.shape} differs from onnxruntime's {b.shape}")
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        abs_err = float(diff.max()) if diff.size else 0.0
        rel_err = float((diff / (np.abs(b.astype(np.float64)) + atol)).max()) if diff.size else 0.0
        if abs_err >= max_abs:
            max_abs, worst = abs_err, name
        max_rel = max(max_rel, rel_err)
        ok = ok and bool(np.allclose(a, b, atol=atol, rtol=rtol, equal_nan=False))
    return max_abs, max_rel, worst, ok


def check_parity(
    run_artifact: Runner,
    reference: Runner,
    input_specs: Sequence[TensorSpec],
    output_specs: Sequence[TensorSpec],
    *,
    samples: int,
    atol: float,
    rtol: float,
    seed: int,
    where: str,
) -> ParityReport:
    """Compare `run_artifact` with `reference` on `samples` random inputs; ParityError beyond tolerance."""
    names = [s.name for s in output_specs]
    max_abs, max_rel, worst, ok = 0.0, 0.0, "", True
    for sample in range(samples):
        inputs = random_inputs(input_specs, seed + sample)
        a, r, w, good = compare_outputs(run_artifact(inputs), reference(inputs), names, atol, rtol)
        if a >= max_abs:
            max_abs, worst = a, w
        max_rel = max(max_rel, r)
        ok = ok and good
    report = ParityReport(
        checked=True, where=where, samples=samples, max_abs_err=max_abs, max_rel_err=max_rel,
        atol=atol, rtol=rtol, passed=ok, worst_output=worst,
    )
    if not ok:
        raise ParityError(
            f"the compiled artifact disagrees with onnxruntime on {where}: output '{worst}' max abs error "
            f"{max_abs:.3g}, max rel error {max_rel:.3g} (tolerance atol={atol:g}, rtol={rtol:g}). "
            "No artifact was written. Try --trials 0 to see whether a tuned schedule is at fault; if the "
            "difference is acceptable for your model, raise [compile].atol / rtol in build.toml."
        )
    return report

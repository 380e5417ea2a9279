"""Parity: run the built artifact and onnxruntime on the same random inputs and compare.

The tolerance knows float noise. onnxruntime is run twice on every input, with its graph
optimisations fully on (the reference) and fully off: both are correct float32 evaluations, and the
gap between them is the reference's own numerical noise. Per output, over all samples:

    noise = max |optimised - unoptimised|        scale = max |reference|
    floor = max(atol, noise_factor * noise, scale_rtol * scale)

and an element passes when |artifact - reference| <= max(floor, rtol * |reference|). atol and rtol
stay as floors; noise_factor and scale_rtol (why their defaults: compiler/settings.py) accept the
rounding a correct float32 build leaves on small elements beside large ones, which a plain
allclose refuses. A real miscompile (a wrong op, a wrong layout) moves elements by a sizeable
fraction of the scale and still fails.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nasc.errors import ParityError
from nasc.tensors import TensorSpec

from .settings import PARITY_NOISE_FACTOR, PARITY_SCALE_RTOL

Runner = Callable[[list[np.ndarray]], list[np.ndarray]]


@dataclass(frozen=True)
class ParityReport:
    """How the artifact compared with onnxruntime.

    The figures are those of `worst_output`, the output whose worst element came closest to (or
    went furthest past) its tolerance, over all samples.
    """

    checked: bool
    where: str
    samples: int = 0
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    atol: float = 0.0
    rtol: float = 0.0
    passed: bool = False
    worst_output: str = ""
    noise_factor: float = 0.0
    scale_rtol: float = 0.0
    reference_noise: float | None = None  # max |onnxruntime optimised - unoptimised|
    reference_noise_rel: float | None = None  # the same, as a fraction of output_scale
    output_scale: float | None = None  # max |reference|
    tolerance_abs: float | None = None  # max(atol, noise_factor*noise, scale_rtol*scale): the floor used
    max_err_rel_scale: float | None = None  # max_abs_err as a fraction of output_scale
    worst_err_over_tol: float | None = None  # the worst element's error over its own tolerance (<= 1 passes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParityReport:
        """Inverse of :meth:`to_dict`; keys older records lack take their defaults, unknown keys are refused."""
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown parity keys {', '.join(unknown)}")
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


class OnnxReference:
    """onnxruntime on the CPU, two sessions built once: graph optimisations all on (ORT_ENABLE_ALL, the
    reference, what a call returns) and all off (ORT_DISABLE_ALL, :meth:`unoptimised`, for the noise)."""

    def __init__(self, onnx_path: str | Path, input_specs: Sequence[TensorSpec]) -> None:
        import onnxruntime as ort

        def session(level: Any) -> Any:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            options.graph_optimization_level = level
            return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

        self._optimised = session(ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        self._unoptimised = session(ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        self._names = [s.name for s in input_specs]

    def _run(self, session: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(o) for o in session.run(None, dict(zip(self._names, inputs, strict=True)))]

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return self._run(self._optimised, inputs)

    def unoptimised(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """The same model with every graph optimisation off."""
        return self._run(self._unoptimised, inputs)


def onnxruntime_runner(onnx_path: str | Path, input_specs: Sequence[TensorSpec]) -> OnnxReference:
    """A runner that evaluates the ONNX file with onnxruntime on the CPU (and knows its own noise)."""
    return OnnxReference(onnx_path, input_specs)


@dataclass(frozen=True)
class OutputParity:
    """One output's figures over all samples."""

    name: str
    max_abs_err: float
    max_rel_err: float
    noise: float
    scale: float
    tolerance_abs: float
    err_over_tol: float

    @property
    def passed(self) -> bool:
        return self.err_over_tol <= 1.0


def _f64(array: np.ndarray) -> np.ndarray:
    return np.asarray(array).astype(np.float64)


def _abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| in float64, 0 where the two are equal (equal infinities included)."""
    x, y = _f64(a), _f64(b)
    with np.errstate(invalid="ignore"):
        return np.where(x == y, 0.0, np.abs(x - y))


def _max(values: np.ndarray) -> float:
    return float(values.max()) if values.size else 0.0


def compare_output(
    name: str,
    got: Sequence[np.ndarray],
    want: Sequence[np.ndarray],
    want_unoptimised: Sequence[np.ndarray] | None,
    *,
    atol: float,
    rtol: float,
    noise_factor: float = PARITY_NOISE_FACTOR,
    scale_rtol: float = PARITY_SCALE_RTOL,
) -> OutputParity:
    """Compare one output over all samples (`got[i]` with `want[i]`) by the rule of this module.

    Without `want_unoptimised` the noise is taken as 0. The noise and scale floors apply to floating
    outputs only: an integer output must match within atol / rtol.
    """
    for a, b in zip(got, want, strict=True):
        if a.shape != b.shape:
            raise ParityError(f"output '{name}': artifact shape {a.shape} differs from onnxruntime's {b.shape}")
    errs = [_abs_diff(a, b) for a, b in zip(got, want, strict=True)]
    mags = [np.abs(_f64(b)) for b in want]
    floating = all(np.issubdtype(np.asarray(b).dtype, np.floating) for b in want)
    noise = 0.0
    if want_unoptimised is not None:
        noise = max(_max(_abs_diff(u, b)) for u, b in zip(want_unoptimised, want, strict=True))
    scale = max(_max(m) for m in mags)
    floor = max(atol, noise_factor * noise, scale_rtol * scale) if floating else atol
    if not (np.isfinite(noise) and np.isfinite(scale)):  # NaN / inf in the reference: nothing to scale by
        floor = atol
    ratio, max_abs, max_rel = 0.0, 0.0, 0.0
    for err, mag in zip(errs, mags, strict=True):
        if not err.size:
            continue
        if not np.isfinite(err).all():  # NaN or inf where the reference has something else, or NaN itself
            ratio = max_abs = max_rel = float("inf")
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            over = np.where(err == 0, 0.0, err / np.maximum(floor, rtol * mag))  # x/0 -> inf: beyond a zero tolerance
            rel = np.where(err == 0, 0.0, err / (mag + atol))
        ratio, max_abs, max_rel = max(ratio, float(over.max())), max(max_abs, float(err.max())), \
            max(max_rel, float(rel.max()))
    return OutputParity(name, max_abs, max_rel, noise, scale, floor, ratio)


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
    noise_factor: float = PARITY_NOISE_FACTOR,
    scale_rtol: float = PARITY_SCALE_RTOL,
    reference_unoptimised: Runner | None = None,
) -> ParityReport:
    """Compare `run_artifact` with `reference` on `samples` random inputs; ParityError beyond tolerance.

    The reference's noise comes from `reference_unoptimised`, or from `reference.unoptimised` when the
    reference is an :class:`OnnxReference` (what :func:`onnxruntime_runner` returns); a plain runner
    without either has no measured noise (0), and only atol, rtol and scale_rtol apply.
    """
    if reference_unoptimised is None and isinstance(reference, OnnxReference):
        reference_unoptimised = reference.unoptimised
    names = [s.name for s in output_specs]
    got: list[list[np.ndarray]] = [[] for _ in names]
    want: list[list[np.ndarray]] = [[] for _ in names]
    unopt: list[list[np.ndarray]] = [[] for _ in names]
    for sample in range(samples):
        inputs = random_inputs(input_specs, seed + sample)
        runs = [("the artifact", run_artifact(inputs), got), ("onnxruntime", reference(inputs), want)]
        if reference_unoptimised is not None:
            runs.append(("unoptimised onnxruntime", reference_unoptimised(inputs), unopt))
        for who, outputs, into in runs:
            if len(outputs) != len(names):
                raise ParityError(f"{who} returned {len(outputs)} outputs, the model declares {len(names)}")
            for bucket, array in zip(into, outputs, strict=True):
                bucket.append(np.asarray(array))
    results = [
        compare_output(name, g, w, u if reference_unoptimised is not None else None, atol=atol, rtol=rtol,
                       noise_factor=noise_factor, scale_rtol=scale_rtol)
        for name, g, w, u in zip(names, got, want, unopt, strict=True)
    ]
    worst = max(results, key=lambda r: r.err_over_tol) if results else None
    passed = all(r.passed for r in results)
    report = ParityReport(
        checked=True, where=where, samples=samples, atol=atol, rtol=rtol, passed=passed,
        noise_factor=noise_factor, scale_rtol=scale_rtol,
    )
    if worst is not None:
        report = dataclasses.replace(
            report, worst_output=worst.name, max_abs_err=worst.max_abs_err, max_rel_err=worst.max_rel_err,
            reference_noise=worst.noise, reference_noise_rel=_of_scale(worst.noise, worst.scale),
            output_scale=worst.scale, tolerance_abs=worst.tolerance_abs,
            max_err_rel_scale=_of_scale(worst.max_abs_err, worst.scale), worst_err_over_tol=worst.err_over_tol,
        )
    if not passed:
        assert worst is not None
        raise ParityError(
            f"the compiled artifact disagrees with onnxruntime on {where}: output '{worst.name}' max abs error "
            f"{worst.max_abs_err:.3g} ({_fraction(worst.max_abs_err, worst.scale)} of its scale "
            f"{worst.scale:.3g}), max rel error {worst.max_rel_err:.3g}; onnxruntime's own noise (optimised vs "
            f"unoptimised) is {worst.noise:.3g} ({_fraction(worst.noise, worst.scale)} of scale); tolerance "
            f"{worst.tolerance_abs:.3g} = max(atol={atol:g}, noise_factor={noise_factor:g} x noise, "
            f"scale_rtol={scale_rtol:g} x scale), or rtol={rtol:g} of the element; the worst element is "
            f"{worst.err_over_tol:.3g}x its tolerance. No artifact was written. {_parity_fix(worst, scale_rtol)}"
        )
    return report


def _of_scale(value: float, scale: float) -> float | None:
    return value / scale if scale > 0 and np.isfinite(scale) else None


def _fraction(value: float, scale: float) -> str:
    fraction = _of_scale(value, scale)
    return "n/a" if fraction is None else f"{fraction:.2g}"


FAR_BEYOND_ROUNDING = 1e-3  # an error this large a fraction of the output's scale is a wrong result


def _parity_fix(worst: OutputParity, scale_rtol: float) -> str:
    """What to do: a wrong result is not fixed by tolerance, rounding may be."""
    fraction = _of_scale(worst.max_abs_err, worst.scale)
    if fraction is None or fraction >= FAR_BEYOND_ROUNDING:
        return ("That is far beyond float rounding (a wrong op, layout or schedule), so do not raise the "
                "tolerance: compile with --trials 0 to see whether a tuned schedule is at fault, and if the "
                "untuned build fails too, report the model (TVM's import or build of it is wrong).")
    return ("Compile with --trials 0 to see whether a tuned schedule is at fault; if the difference is "
            f"acceptable for your model, raise [compile].scale_rtol (now {scale_rtol:g}; this error is "
            f"{fraction:.2g} of the scale) or noise_factor, atol, rtol in build.toml.")

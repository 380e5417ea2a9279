"""[compile] settings of build.toml (plain data, no TVM)."""

from __future__ import annotations

from dataclasses import dataclass

# Parity tolerance beyond atol/rtol (see nasc.compiler.verify.check_parity for the rule).
# noise_factor: the compiled artifact is one more valid float32 evaluation of the network, like
#   onnxruntime with and without its graph optimisations; its reordering (other tiling, fusion,
#   FMA) may reach a few times the gap between those two, and three random inputs under-sample the
#   worst case, so 8x that gap is allowed.
# scale_rtol: float32 epsilon is 1.2e-7; a dot product of length K rounds to about eps*sqrt(K)
#   of the magnitudes it sums, and a deep net stacks dozens of them, so an element may carry an
#   absolute error of a few 1e-6 of the output's largest magnitude however small the element itself
#   is (a ResNet-50 seen here: 1.7e-6). 1e-5 (about 80 eps) covers that with headroom, while a real
#   miscompile (a wrong op, a dropped bias, a wrong layout) moves outputs by 1e-3 .. 1 of the scale.
PARITY_NOISE_FACTOR = 8.0
PARITY_SCALE_RTOL = 1e-5


@dataclass(frozen=True)
class CompileSettings:
    """[compile]: export, tuning and parity settings."""

    trials: int = 0  # MetaSchedule trials per tuning task, on average; 0 = no tuning
    trials_per_iteration: int = 32  # at most this many candidates measured per search round
    opset: int = 17
    atol: float = 1e-4  # parity floors: an element may always differ by atol, and by rtol of itself
    rtol: float = 1e-3
    noise_factor: float = PARITY_NOISE_FACTOR  # times onnxruntime's own optimised-vs-unoptimised gap
    scale_rtol: float = PARITY_SCALE_RTOL  # times the output's largest magnitude (float32 accumulation)
    verify_samples: int = 3  # random inputs compared with onnxruntime
    seed: int = 0

    def __post_init__(self) -> None:
        if self.trials < 0:
            raise ValueError("trials must be >= 0 (0 means no tuning)")
        if self.trials_per_iteration < 1:
            raise ValueError("trials_per_iteration must be >= 1")
        if self.opset < 17:
            raise ValueError("opset must be >= 17")
        if self.verify_samples < 1:
            raise ValueError("verify_samples must be >= 1")
        for name in ("atol", "rtol", "noise_factor", "scale_rtol"):
            if not getattr(self, name) >= 0:  # also refuses NaN
                raise ValueError(f"{name} must be >= 0")

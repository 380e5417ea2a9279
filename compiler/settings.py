"""[compile] settings of build.toml (plain data, no TVM)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CompileSettings:
    """[compile]: export, tuning and parity settings."""

    trials: int = 0  # MetaSchedule trials per tuning task, on average; 0 = no tuning
    trials_per_iteration: int = 32  # at most this many candidates measured per search round
    opset: int = 17
    atol: float = 1e-4
    rtol: float = 1e-3
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

"""[package] settings of build.toml (plain data)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Protocol = Literal["nasc", "ymodem"]


@dataclass(frozen=True)
class PackageSettings:
    """[package]: how bundles are made, unpacked and sent over a serial line.

    Preprocessing is recorded in the manifest for the firmware team; nasc does not apply it.
    ``preprocessing_resize`` is (height, width), empty for none; ``preprocessing_scale`` multiplies
    raw pixel values before ``(x - mean) / std`` (1/255 for 8-bit images).
    """

    preprocessing_mean: tuple[float, ...] = ()
    preprocessing_std: tuple[float, ...] = ()
    preprocessing_resize: tuple[int, ...] = ()
    preprocessing_scale: float = 1.0
    sample_seed: int = 0  # the sample input is drawn from this seed (same seed, same bundle bytes)
    sample_atol: float = 1e-4  # on-device check of the sample output: |got - want| <= atol + rtol*|want|
    sample_rtol: float = 1e-3
    max_member_mb: float = 1024.0  # unpacking refuses a bundle member larger than this
    baud: int = 921600
    protocol: Protocol = "nasc"
    chunk_bytes: int = 1024  # payload bytes per data frame (nasc protocol)
    window_frames: int = 8  # data frames in flight before an acknowledgement is needed
    ack_timeout_s: float = 1.0  # resend unacknowledged frames after this long
    stall_timeout_s: float = 30.0  # give up after this long without progress (receiver gone)

    def __post_init__(self) -> None:
        if len(self.preprocessing_mean) != len(self.preprocessing_std):
            raise ValueError("preprocessing_mean and preprocessing_std need the same number of values")
        if any(s == 0 for s in self.preprocessing_std):
            raise ValueError("preprocessing_std values must be non-zero")
        if self.preprocessing_resize and (
            len(self.preprocessing_resize) != 2 or min(self.preprocessing_resize) < 1
        ):
            raise ValueError("preprocessing_resize must be [height, width] with positive values, or empty")
        if self.sample_atol < 0 or self.sample_rtol < 0:
            raise ValueError("sample_atol and sample_rtol must be >= 0")
        if self.max_member_mb <= 0:
            raise ValueError("max_member_mb must be > 0")
        if self.baud < 1:
            raise ValueError("baud must be >= 1")
        if not 16 <= self.chunk_bytes <= 8192:
            raise ValueError("chunk_bytes must be between 16 and 8192")
        if not 1 <= self.window_frames <= 64:
            raise ValueError("window_frames must be between 1 and 64")
        if self.ack_timeout_s <= 0 or self.stall_timeout_s <= self.ack_timeout_s:
            raise ValueError("ack_timeout_s must be > 0 and stall_timeout_s larger than ack_timeout_s")

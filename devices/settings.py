"""[measure] settings of build.toml (plain data, no TVM)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MeasureSettings:
    """[measure]: the timing protocol."""

    warmup: int = 5
    number: int = 20
    repeat: int = 15

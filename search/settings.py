"""[search] and [data] settings of build.toml (plain data, no torch)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataSettings:
    """[data]: where training data comes from."""

    source: str = "digits"


@dataclass(frozen=True)
class SearchSettings:
    """[search]: architecture search settings."""

    latency_ms: float | None = None

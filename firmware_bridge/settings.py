"""[package] settings of build.toml (plain data)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PackageSettings:
    """[package]: how bundles are made."""

    preprocessing_mean: tuple[float, ...] = ()
    preprocessing_std: tuple[float, ...] = ()

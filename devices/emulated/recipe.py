"""What an emulated board's root file system is made of, and the stamp that records a finished build."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nasc.errors import ConfigError

STAMP_NAME = ".nasc-rootfs.json"
STAMP_SCHEMA = 1

# aarch64 wheels for the board's Python (bookworm: CPython 3.11, glibc 2.36). Debian's numpy 1.24 is
# too old for ml_dtypes 0.6, so numpy 2.x comes in as a wheel too. Pins match the host's pyproject.
ARM64_WHEELS = (
    "apache-tvm==0.27.0.post1",
    "apache-tvm-ffi==0.1.14.post1",
    "ml_dtypes==0.6.0",
    "typing_extensions==4.16.0",
    "numpy==2.4.6",
)


@dataclass(frozen=True)
class BoardRecipe:
    """How to build one board's root file system: Debian release, architecture, packages, wheels."""

    board: str
    debian_arch: str  # debootstrap --arch
    qemu_arch: str  # binfmt handler name: qemu-<qemu_arch>
    machine: str  # what platform.machine() says inside the rootfs
    suite: str
    variant: str
    packages: tuple[str, ...]
    python_version: str
    wheel_platforms: tuple[str, ...]
    wheels: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BoardRecipe:
        """Inverse of :meth:`to_dict`."""
        fields = dict(data)
        for key in ("packages", "wheel_platforms", "wheels"):
            fields[key] = tuple(fields[key])
        return cls(**fields)

    def sha256(self) -> str:
        """Hash of everything that changes what is built (a stamp with another hash means rebuild)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def debootstrap_args(self, target: Path, mirror: str) -> list[str]:
        """Arguments after ``debootstrap``."""
        return [
            f"--arch={self.debian_arch}",
            f"--variant={self.variant}",
            "--include=" + ",".join(self.packages),
            self.suite,
            str(target),
            mirror,
        ]

    def pip_download_args(self, dest: Path) -> list[str]:
        """Arguments after ``python -m pip`` that fetch the board's wheels (binary only, no deps)."""
        args = ["download", "--no-deps", "--only-binary=:all:", "--python-version", self.python_version,
                "--implementation", "cp", "--dest", str(dest)]
        for platform in self.wheel_platforms:
            args += ["--platform", platform]
        return [*args, *self.wheels]


RECIPES: dict[str, BoardRecipe] = {
    "rpi4": BoardRecipe(
        board="rpi4",
        debian_arch="arm64",
        qemu_arch="aarch64",
        machine="aarch64",
        suite="bookworm",
        variant="minbase",
        packages=("python3", "python3-numpy", "python3-psutil", "python3-cloudpickle", "python3-tornado",
                  "python3-pip", "ca-certificates"),
        python_version="3.11",
        wheel_platforms=("manylinux_2_28_aarch64", "manylinux_2_17_aarch64"),
        wheels=ARM64_WHEELS,
    ),
}

# Names a user may type for a board: the device profile names map to their board.
BOARD_ALIASES = {"rpi4-emulated": "rpi4", "raspberry-pi-4": "rpi4"}


def recipe_for(board: str) -> BoardRecipe:
    """The recipe of `board` (``rpi4``, or the profile name ``rpi4-emulated``)."""
    name = BOARD_ALIASES.get(board, board)
    if name not in RECIPES:
        known = ", ".join(sorted(RECIPES))
        raise ConfigError(f"no emulated board '{board}'; emulated boards: {known} (e.g. nasc devices emulate rpi4)")
    return RECIPES[name]


@dataclass(frozen=True)
class RootfsStamp:
    """Written last into a finished root file system: what was built, from where, how long it took."""

    recipe: BoardRecipe
    recipe_sha256: str
    mirror: str
    wheel_files: tuple[str, ...]
    built_at_utc: str
    build_s: float
    schema: int = STAMP_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        data = asdict(self)
        data["recipe"] = self.recipe.to_dict()
        data["wheel_files"] = list(self.wheel_files)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RootfsStamp:
        """Inverse of :meth:`to_dict`."""
        return cls(
            recipe=BoardRecipe.from_dict(data["recipe"]),
            recipe_sha256=str(data["recipe_sha256"]),
            mirror=str(data["mirror"]),
            wheel_files=tuple(data["wheel_files"]),
            built_at_utc=str(data["built_at_utc"]),
            build_s=float(data["build_s"]),
            schema=int(data.get("schema", 0)),
        )

    def matches(self, recipe: BoardRecipe) -> bool:
        """True when this stamp records a build of exactly `recipe` (by hash and schema)."""
        return self.schema == STAMP_SCHEMA and self.recipe_sha256 == recipe.sha256()


def read_stamp(rootfs: Path) -> RootfsStamp | None:
    """The stamp of `rootfs`, or None when there is none or it cannot be read (an unusable rootfs)."""
    try:
        return RootfsStamp.from_dict(json.loads((rootfs / STAMP_NAME).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_stamp(rootfs: Path, stamp: RootfsStamp) -> None:
    """Write the stamp atomically (temp file + rename inside `rootfs`)."""
    tmp = rootfs / (STAMP_NAME + ".tmp")
    tmp.write_text(json.dumps(stamp.to_dict(), indent=2, sort_keys=True) + "\n")
    tmp.replace(rootfs / STAMP_NAME)

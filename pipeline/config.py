"""build.toml -> Config: typed, frozen settings; anything unexpected is refused with its key path.

The project file is composed here, above the rooms: each room defines and receives only its own
section ([compile], [measure] and [devices], [search] and [data], [package]).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from nasc.compiler.settings import CompileSettings
from nasc.devices.registry import DeviceOverride, resolve_device
from nasc.devices.settings import MeasureSettings
from nasc.devices.spec import DeviceSpec
from nasc.errors import ConfigError
from nasc.firmware_bridge.settings import PackageSettings
from nasc.search.settings import DataSettings, SearchSettings
from nasc.typed_toml import from_mapping, to_plain

DEFAULT_CONFIG_NAME = "build.toml"
EMBEDDED_DEFAULT = "<embedded default build.toml>"


@dataclass(frozen=True)
class ProjectSettings:
    """[project]: names and where things go."""

    name: str = "nasc-project"
    output_dir: str = "out"
    cache_dir: str = ""  # empty: $NASC_CACHE_DIR, else $XDG_CACHE_HOME/nasc, else ~/.cache/nasc
    device: str = "local"  # the device used when a command names none


# Trials per task of a tuned compile when build.toml sets no [compile].trials (search-and-compile, `measure
# --tuned`). search-and-compile tunes its latency table at the same budget, over every distinct workload of the
# space: at 8, the embedded default's whole run stays under 15 minutes cold on a 2-core host (docs/benchmarks.md).
DEFAULT_TUNED_TRIALS = 8


@dataclass(frozen=True)
class Config:
    """The whole project file."""

    source: str = EMBEDDED_DEFAULT
    base_dir: str = "."
    project: ProjectSettings = field(default_factory=ProjectSettings)
    compile: CompileSettings = field(default_factory=CompileSettings)
    devices: dict[str, DeviceOverride] = field(default_factory=dict)
    measure: MeasureSettings = field(default_factory=MeasureSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    data: DataSettings = field(default_factory=DataSettings)
    package: PackageSettings = field(default_factory=PackageSettings)

    def device(self, name: str | None = None) -> DeviceSpec:
        """The DeviceSpec for `name` (default: [project].device)."""
        return resolve_device(name or self.project.device, self.devices, self.source)

    def table_trials(self) -> int:
        """The latency table's tuning budget per task: [search] table_trials, else the trials `nasc compile`
        ships at ([compile].trials; search-and-compile sets it to its own run's), so the table holds the
        blocks as they ship."""
        return self.compile.trials if self.search.table_trials is None else self.search.table_trials

    def cache_dir(self) -> Path:
        """Where tuning records, the latency table and emulated root file systems live."""
        if self.project.cache_dir:
            return self.resolve_path(self.project.cache_dir)
        if os.environ.get("NASC_CACHE_DIR"):
            return Path(os.environ["NASC_CACHE_DIR"]).expanduser()
        xdg = os.environ.get("XDG_CACHE_HOME")
        return (Path(xdg) if xdg else Path.home() / ".cache") / "nasc"

    def output_dir(self) -> Path:
        """[project].output_dir, relative to the project file's folder."""
        return self.resolve_path(self.project.output_dir)

    def resolve_path(self, value: str) -> Path:
        """A path from the project file, relative to its folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else Path(self.base_dir) / path

    def with_section(self, section: str, **changes: Any) -> Config:
        """A copy with fields of one section replaced (how CLI flags override the file); `section` may be
        dotted ("search.proxyless"). None values are left as they are."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            return self
        *parents, name = section.split(".")
        chain: list[Any] = [self]
        for part in parents:
            chain.append(getattr(chain[-1], part))
        known = {f.name for f in dataclasses.fields(getattr(chain[-1], name))}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"command line: [{section}] has no key {', '.join(map(repr, unknown))}; its keys are "
                              f"{', '.join(sorted(known))}")
        try:
            updated = dataclasses.replace(getattr(chain[-1], name), **changes)
            for owner, part in zip(reversed(chain), reversed([*parents, name]), strict=True):
                updated = dataclasses.replace(owner, **{part: updated})
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"command line: [{section}] {exc}") from None
        return updated

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (for records of what a run used)."""
        return to_plain(self)


def parse_config(text: str, source: str, base_dir: str = ".") -> Config:
    """Parse build.toml text; `source` names the file in every error."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    for reserved in ("source", "base_dir"):
        if reserved in data:
            raise ConfigError(f"{source}: key '{reserved}': unknown key")
    config = from_mapping(Config, {**data, "source": source, "base_dir": base_dir}, source)
    for name in config.devices:
        config.device(name)  # refuse a bad device table at load time, not at first use
    return config


def embedded_default_text() -> str:
    """The build.toml shipped inside the package (used when the project has none)."""
    return resources.files("nasc").joinpath("default_build.toml").read_text()


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load `path`, or ./build.toml if it exists, or the embedded default."""
    if path is None:
        candidate = Path(DEFAULT_CONFIG_NAME)
        if not candidate.is_file():
            return parse_config(embedded_default_text(), EMBEDDED_DEFAULT, ".")
        path = candidate
    file = Path(path)
    if not file.is_file():
        raise ConfigError(
            f"{file}: no such project file; create one (see build.toml in the nasc repository) or omit --config"
        )
    return parse_config(file.read_text(), str(file), str(file.parent))

"""The Debian mirror this machine already uses, read from its apt sources (one-line and deb822 files)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nasc.errors import ConfigError

APT_SOURCES = Path("/etc/apt")
MIRROR_ENV = "NASC_DEBIAN_MIRROR"


@dataclass(frozen=True)
class AptSource:
    """One ``deb`` line (or one deb822 URI/suite pair) of the apt sources."""

    uri: str
    suite: str
    components: tuple[str, ...]
    origin: str  # the file it came from


def _parse_one_line(text: str, origin: str) -> list[AptSource]:
    sources = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        rest = line[4:].strip()
        if rest.startswith("["):
            rest = rest.partition("]")[2].strip()
        words = rest.split()
        if len(words) >= 2:
            sources.append(AptSource(words[0], words[1], tuple(words[2:]), origin))
    return sources


def _parse_deb822(text: str, origin: str) -> list[AptSource]:
    sources = []
    for paragraph in text.split("\n\n"):
        fields: dict[str, str] = {}
        last = ""
        for raw in paragraph.splitlines():
            if raw.lstrip().startswith("#") or not raw.strip():
                continue
            if raw[0].isspace() and last:
                fields[last] += " " + raw.strip()
                continue
            key, sep, value = raw.partition(":")
            if sep:
                last = key.strip().lower()
                fields[last] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        components = tuple(fields.get("components", "").split())
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                sources.append(AptSource(uri, suite, components, origin))
    return sources


def read_apt_sources(apt_dir: Path = APT_SOURCES) -> list[AptSource]:
    """Every ``deb`` source in ``sources.list`` and ``sources.list.d/*.list|*.sources``, in apt's order."""
    files = [apt_dir / "sources.list"]
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        files += sorted(parts.iterdir())
    sources: list[AptSource] = []
    for file in files:
        if not file.is_file():
            continue
        try:
            text = file.read_text(errors="replace")
        except OSError:
            continue
        if file.suffix == ".sources":
            sources += _parse_deb822(text, str(file))
        elif file.name == "sources.list" or file.suffix == ".list":
            sources += _parse_one_line(text, str(file))
    return sources


def _is_debian_main(source: AptSource) -> bool:
    """A plain Debian release (no -security/-updates pocket, main component, a debian archive path)."""
    return (
        "-" not in source.suite
        and "/" not in source.suite
        and "main" in source.components
        and source.uri.rstrip("/").rsplit("/", 1)[-1] == "debian"
    )


def debian_mirror(suite: str, apt_dir: Path = APT_SOURCES) -> str:
    """The mirror URI for debootstrap: $NASC_DEBIAN_MIRROR, else the apt source of `suite` on this machine.

    Prefers a source listing `suite` itself; otherwise any plain Debian release source (a mirror
    serves every release). Raises ConfigError naming the files read and the override.
    """
    override = os.environ.get(MIRROR_ENV, "").strip()
    if override:
        return override
    sources = [s for s in read_apt_sources(apt_dir) if _is_debian_main(s)]
    for source in sources:
        if source.suite == suite:
            return source.uri
    if sources:
        return sources[0].uri
    raise ConfigError(
        f"no Debian mirror found in the apt sources under {apt_dir} (sources.list, sources.list.d/); "
        f"set {MIRROR_ENV} to a Debian mirror URI that serves '{suite}'"
    )

"""BundleManifest: the versioned, self-describing record inside every bundle (manifest.json).

Reading validates everything (types, unknown keys, schema version, hashes' form, safe paths), so a
bundle that parses is one nasc understands. Stdlib only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from nasc.errors import BundleCorrupt, ConfigError
from nasc.tensors import TensorSpec
from nasc.typed_toml import from_mapping, to_plain

SCHEMA = "nasc.bundle/1"
MANIFEST_NAME = "manifest.json"
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
ROLES = ("library", "onnx", "header", "example", "sample-input", "expected-output", "arch", "record", "doc")


def check_member_path(path: str) -> str | None:
    """Why `path` is not a safe relative bundle path, or None when it is."""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        return "absolute, empty or not a plain POSIX path"
    parts = PurePosixPath(path).parts
    if any(part in ("..", ".") for part in parts) or path.endswith("/") or "//" in path:
        return "contains '..', '.' or empty components"
    return None


@dataclass(frozen=True)
class FileEntry:
    """One file of the bundle."""

    path: str
    size_bytes: int
    sha256: str
    role: str

    def __post_init__(self) -> None:
        why = check_member_path(self.path)
        if why:
            raise ValueError(f"file path {self.path!r}: {why}")
        if self.size_bytes < 0:
            raise ValueError(f"{self.path}: size_bytes must be >= 0")
        if not SHA256_RE.match(self.sha256):
            raise ValueError(f"{self.path}: sha256 must be 64 lower-case hex digits")
        if self.role not in ROLES:
            raise ValueError(f"{self.path}: role {self.role!r} is not one of {', '.join(ROLES)}")


@dataclass(frozen=True)
class Preprocessing:
    """What the firmware must do to a raw image before it is an input: resize, scale, (x-mean)/std."""

    resize: tuple[int, ...] = ()  # (height, width), empty for none
    scale: float = 1.0
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    layout: str = ""
    note: str = ""  # the data pipeline's own words, for what numbers cannot say (e.g. "uint8 / 255")
    class_names: tuple[str, ...] = ()  # output index -> label, when the model is a classifier


@dataclass(frozen=True)
class Latency:
    """Predicted (search's latency model) and measured (TVM RPC) latency on one device."""

    device: str
    emulated: bool
    predicted_ms: float | None = None
    measured_median_ms: float | None = None
    measured_noisy: bool | None = None  # the oracle flags a measurement it could not make stable


@dataclass(frozen=True)
class Sample:
    """A sample input and the expected output (onnxruntime on the ONNX model), for on-device checks."""

    inputs: tuple[str, ...]
    expected_outputs: tuple[str, ...]
    atol: float
    rtol: float
    seed: int
    reference: str = "onnxruntime"


@dataclass(frozen=True)
class BundleManifest:
    """Everything a firmware team needs to know about a bundle."""

    schema: str
    name: str
    device: dict[str, Any]
    target: str | dict[str, Any]
    target_triple: str
    library: str
    onnx: str
    onnx_sha256: str
    header: str
    versions: dict[str, str]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    preprocessing: Preprocessing
    latency: Latency
    sample: Sample
    files: tuple[FileEntry, ...]
    accuracy: float | None = None
    parity: dict[str, Any] = field(default_factory=dict)
    arch: str | None = None

    def __post_init__(self) -> None:
        if self.schema != SCHEMA:
            raise ValueError(f"schema {self.schema!r} is not supported (this nasc reads {SCHEMA!r})")
        paths = [f.path for f in self.files]
        dupes = sorted({p for p in paths if paths.count(p) > 1})
        if dupes:
            raise ValueError(f"files lists {', '.join(dupes)} more than once")
        if MANIFEST_NAME in paths:
            raise ValueError(f"files must not list {MANIFEST_NAME} itself")
        named = [self.library, self.onnx, self.header, *self.sample.inputs, *self.sample.expected_outputs]
        if self.arch:
            named.append(self.arch)
        missing = [p for p in named if p not in paths]
        if missing:
            raise ValueError(f"{', '.join(missing)} named in the manifest but not listed in files")
        if len(self.sample.inputs) != len(self.inputs) or len(self.sample.expected_outputs) != len(self.outputs):
            raise ValueError("sample needs one input file per input and one expected output per output")
        if not SHA256_RE.match(self.onnx_sha256):
            raise ValueError("onnx_sha256 must be 64 lower-case hex digits")
        if self.accuracy is not None and not 0.0 <= self.accuracy <= 1.0:
            raise ValueError(f"accuracy {self.accuracy} is not a fraction between 0 and 1")

    def file(self, path: str) -> FileEntry:
        """The entry for `path` (KeyError when absent)."""
        for entry in self.files:
            if entry.path == path:
                return entry
        raise KeyError(path)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return to_plain(self)

    def to_json(self) -> bytes:
        """Canonical bytes (sorted keys, 2-space indent, trailing newline): same manifest, same bytes."""
        return (json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n").encode()

    @classmethod
    def from_dict(cls, data: Any, source: str = MANIFEST_NAME) -> BundleManifest:
        """Validate and build; any problem is a BundleCorrupt naming `source` and the key."""
        if not isinstance(data, dict):
            raise BundleCorrupt(f"{source}: expected a JSON object at the top level")
        schema = data.get("schema")
        if schema != SCHEMA:
            raise BundleCorrupt(
                f"{source}: key 'schema': {schema!r} is not supported (this nasc reads {SCHEMA!r}); "
                "package the model again with this nasc or use the nasc that made it"
            )
        try:
            return from_mapping(cls, data, source)
        except ConfigError as exc:
            raise BundleCorrupt(str(exc)) from None

    @classmethod
    def from_json(cls, raw: bytes, source: str = MANIFEST_NAME) -> BundleManifest:
        """Parse manifest.json bytes (validated)."""
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleCorrupt(f"{source}: not valid JSON: {exc}") from None
        return cls.from_dict(data, source)

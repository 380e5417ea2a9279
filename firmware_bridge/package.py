"""`nasc package`: a compile output folder -> one verified, deterministic bundle (tar.gz)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from nasc import __version__
from nasc.errors import BundleCorrupt, InputError
from nasc.fsutil import sha256_file as file_sha256

from .bundle import Member, sha256_of, verify_bundle, write_bundle
from .header import DLPACK_TYPES, render_header
from .manifest import (
    SCHEMA,
    BundleManifest,
    FileEntry,
    Latency,
    Preprocessing,
    Sample,
    TensorSpec,
)
from .sample import npy_bytes, reference_outputs, sample_inputs
from .settings import PackageSettings

COMPILE_SCHEMA = "nasc.compile/1"
HEADER_NAME = "model_info.h"
EXAMPLE_FILES = {"main.cc": "example/main.cc", "Makefile": "example/Makefile", "README.md": "example/README.md"}
RECORD_FILES = ("search.json", "measure.json")  # copied verbatim when present


@dataclass(frozen=True)
class PackageResult:
    """What `nasc package` made."""

    bundle: str
    sha256: str
    size_bytes: int
    manifest: BundleManifest

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"bundle": self.bundle, "sha256": self.sha256, "size_bytes": self.size_bytes,
                "manifest": self.manifest.to_dict()}


def _read_json(path: Path, required: bool) -> dict[str, Any] | None:
    if not path.is_file():
        if required:
            raise InputError(f"{path}: missing; run nasc compile MODEL.onnx --device NAME -o {path.parent} first")
        return None
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def _key(data: dict[str, Any], key: str, source: Path, kind: type | tuple[type, ...]) -> Any:
    if key not in data:
        raise InputError(f"{source}: key '{key}' is missing; compile again with this nasc")
    if not isinstance(data[key], kind):
        raise InputError(f"{source}: key '{key}' has the wrong type ({type(data[key]).__name__})")
    return data[key]


def _tensors(data: dict[str, Any], key: str, source: Path) -> tuple[TensorSpec, ...]:
    specs = []
    for i, item in enumerate(_key(data, key, source, list)):
        where = f"{source}: key '{key}[{i}]'"
        if not (isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("shape"), list)):
            raise InputError(f"{where}: expected {{name, shape, dtype, layout}}")
        shape = item["shape"]
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise InputError(f"{where}: shape {shape} is not fully static; compile with a fixed input shape")
        dtype = str(item.get("dtype", ""))
        if dtype not in DLPACK_TYPES:
            raise InputError(f"{where}: dtype {dtype!r} is not one of {', '.join(DLPACK_TYPES)}")
        specs.append(TensorSpec(item["name"], tuple(shape), dtype, str(item.get("layout", ""))))
    if not specs:
        raise InputError(f"{source}: key '{key}' is empty")
    return tuple(specs)


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _preprocessing(settings: PackageSettings, record: dict[str, Any], search: dict[str, Any],
                   layout: str) -> Preprocessing:
    """[package] settings first, then compile.json's "preprocessing", then the search's data pipeline."""
    merged: dict[str, Any] = {}
    for source in (search.get("preprocessing"), record.get("preprocessing")):
        if isinstance(source, dict):
            merged.update({k: v for k, v in source.items() if v not in (None, "", [])})
    size = merged.get("size")  # the search writes [channels, height, width]
    resize = settings.preprocessing_resize or merged.get("resize") or (size[-2:] if isinstance(size, list) else ())
    scale = settings.preprocessing_scale if settings.preprocessing_scale != 1.0 else merged.get("scale", 1.0)
    note = merged.get("note", "")
    if isinstance(scale, str):  # the search describes its scaling in words
        note, scale = scale, 1.0
    try:
        return Preprocessing(
            resize=tuple(int(v) for v in resize),
            scale=float(scale),
            mean=tuple(float(v) for v in (settings.preprocessing_mean or merged.get("mean", ()))),
            std=tuple(float(v) for v in (settings.preprocessing_std or merged.get("std", ()))),
            layout=str(merged.get("layout", layout)),
            note=str(note),
            class_names=tuple(str(c) for c in merged.get("class_names", ())),
        )
    except (TypeError, ValueError) as exc:
        raise InputError(f"preprocessing in compile.json / search.json is malformed ({exc})") from None


def _template(name: str) -> bytes:
    return resources.files("nasc.firmware_bridge").joinpath("templates", name).read_bytes()


def build_manifest_members(from_dir: Path, settings: PackageSettings) -> tuple[BundleManifest, list[Member]]:
    """Read a compile output folder and produce the manifest and every bundle member (manifest.json included)."""
    compile_json = from_dir / "compile.json"
    record = _read_json(compile_json, required=True)
    assert record is not None
    if record.get("schema") != COMPILE_SCHEMA:
        raise InputError(f"{compile_json}: key 'schema' is {record.get('schema')!r}, expected {COMPILE_SCHEMA!r}")
    library_name = _key(record, "library", compile_json, str)
    onnx_name = _key(record, "onnx", compile_json, str)
    device = _key(record, "device", compile_json, dict)
    inputs = _tensors(record, "inputs", compile_json)
    outputs = _tensors(record, "outputs", compile_json)
    for key, name in (("library", library_name), ("onnx", onnx_name)):
        if Path(name).name != name or name in ("", ".", ".."):
            raise InputError(f"{compile_json}: key '{key}': {name!r} must be a plain file name inside {from_dir}")
    library, onnx_path = from_dir / library_name, from_dir / onnx_name
    for path in (library, onnx_path):
        if not path.is_file():
            raise InputError(f"{path}: missing (named in {compile_json}); compile again into {from_dir}")
    onnx_sha = file_sha256(onnx_path)
    for path, key, digest in ((onnx_path, "onnx_sha256", onnx_sha), (library, "library_sha256", None)):
        recorded = record.get(key)
        digest = digest or (file_sha256(path) if recorded is not None else None)
        if recorded is not None and recorded != digest:
            raise InputError(
                f"{path}: sha256 {str(digest)[:16]} differs from compile.json's {key} {str(recorded)[:16]}; "
                "the file changed after compiling, compile again"
            )

    search = _read_json(from_dir / "search.json", required=False) or {}
    measure = _read_json(from_dir / "measure.json", required=False) or {}
    arch_path = from_dir / "arch.json"

    arrays = sample_inputs(inputs, settings.sample_seed)
    expected = reference_outputs(onnx_path, inputs, outputs, arrays)
    members = [Member(library.name, source=library), Member(onnx_path.name, source=onnx_path)]
    entries = [("library", library.name), ("onnx", onnx_path.name)]
    sample_in = tuple(f"sample/input-{i}.npy" for i in range(len(inputs)))
    sample_out = tuple(f"sample/expected-output-{i}.npy" for i in range(len(outputs)))
    for path, array in zip(sample_in, arrays, strict=True):
        members.append(Member(path, data=npy_bytes(array)))
        entries.append(("sample-input", path))
    for path, array in zip(sample_out, expected, strict=True):
        members.append(Member(path, data=npy_bytes(array)))
        entries.append(("expected-output", path))
    if arch_path.is_file():
        members.append(Member("arch.json", source=arch_path))
        entries.append(("arch", "arch.json"))
    for name in RECORD_FILES:
        if (from_dir / name).is_file():
            members.append(Member(name, source=from_dir / name))
            entries.append(("record", name))
    for template, path in EXAMPLE_FILES.items():
        members.append(Member(path, data=_template(template)))
        entries.append(("example", path))

    preprocessing = _preprocessing(settings, record, search, inputs[0].layout)
    measured = measure.get("measurement") if isinstance(measure.get("measurement"), dict) else measure
    device_name = str(device.get("name", ""))
    latency = Latency(
        device=str(measured.get("device", device_name)),
        emulated=bool(measured.get("emulated", device.get("emulated", False))),
        predicted_ms=_float_or_none(search.get("predicted_ms")),
        measured_median_ms=_float_or_none(measured.get("median_ms")),
        measured_noisy=measured["noisy"] if isinstance(measured.get("noisy"), bool) else None,
    )

    def file_entries(extra: list[FileEntry]) -> tuple[FileEntry, ...]:
        by_path = {m.path: m for m in members}
        result = list(extra)
        for role, path in entries:
            with by_path[path].open() as reader:
                digest, size = sha256_of(reader)
            result.append(FileEntry(path, size, digest, role))
        return tuple(sorted(result, key=lambda e: e.path))

    versions = {k: str(record[f"{k}_version"]) for k in ("tvm", "nasc", "onnx") if f"{k}_version" in record}
    versions["nasc_packager"] = __version__
    fields = dict(
        schema=SCHEMA,
        name=str(record.get("name") or f"model-{device_name}"),
        device=device,
        target=_key(record, "target", compile_json, (str, dict)),
        target_triple=str(record.get("target_triple", "")),
        library=library.name,
        onnx=onnx_path.name,
        onnx_sha256=onnx_sha,
        header=HEADER_NAME,
        versions=versions,
        inputs=inputs,
        outputs=outputs,
        preprocessing=preprocessing,
        latency=latency,
        sample=Sample(sample_in, sample_out, settings.sample_atol, settings.sample_rtol, settings.sample_seed),
        accuracy=_float_or_none(search.get("test_accuracy")),
        parity=record.get("parity", {}) if isinstance(record.get("parity"), dict) else {},
        arch="arch.json" if arch_path.is_file() else None,
    )
    try:
        # The header does not depend on hashes: render it from a draft with a placeholder entry for itself.
        draft = BundleManifest(**fields, files=file_entries([FileEntry(HEADER_NAME, 0, "0" * 64, "header")]))
        header = render_header(draft).encode()
        members.append(Member(HEADER_NAME, data=header))
        entries.append(("header", HEADER_NAME))
        manifest = BundleManifest(**fields, files=file_entries([]))
    except ValueError as exc:
        raise InputError(f"{compile_json}: cannot describe this model in a bundle: {exc}") from None
    members.append(Member("manifest.json", data=manifest.to_json()))
    return manifest, members


def default_bundle_path(from_dir: Path) -> Path:
    """model-<device>.tar.gz in the current folder, the device named by from_dir/compile.json."""
    record = _read_json(from_dir / "compile.json", required=True) or {}
    device = record.get("device", {})
    name = str(device.get("name", "")) if isinstance(device, dict) else ""
    return Path(f"model-{name or 'device'}.tar.gz")


def package(from_dir: Path, output: Path | None = None, settings: PackageSettings | None = None) -> PackageResult:
    """Bundle the compile output in `from_dir` into `output` (default: ./model-<device>.tar.gz), then verify it."""
    settings = settings or PackageSettings()
    if not from_dir.is_dir():
        raise InputError(f"{from_dir}: no such folder; give the -o folder of nasc compile")
    output = output or default_bundle_path(from_dir)
    manifest, members = build_manifest_members(from_dir, settings)
    write_bundle(members, output)
    try:
        verify_bundle(output, int(settings.max_member_mb * 1024 * 1024))
    except BundleCorrupt as exc:  # a source file changed while packaging
        output.unlink(missing_ok=True)
        raise InputError(f"{from_dir}: the bundle failed its own check, was a file changing? {exc}") from None
    return PackageResult(str(output), file_sha256(output), output.stat().st_size, manifest)

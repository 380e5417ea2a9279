"""A bundle from its sources: files and facts -> one verified, deterministic tar.gz with its manifest.

firmware_bridge reads no other stage's records: the pipeline reads compile.json, search.json and
measure.json through their writers' classes and hands the facts over as a :class:`BundleSource`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from nasc import __version__
from nasc.errors import BundleCorrupt, InputError
from nasc.fsutil import sha256_file as file_sha256
from nasc.tensors import TensorSpec

from .bundle import Member, sha256_of, verify_bundle, write_bundle
from .header import DLPACK_TYPES, render_header
from .manifest import (
    SCHEMA,
    BundleManifest,
    FileEntry,
    Latency,
    Preprocessing,
    Sample,
)
from .sample import npy_bytes, reference_outputs, sample_inputs
from .settings import PackageSettings

HEADER_NAME = "model_info.h"
EXAMPLE_FILES = {"main.cc": "example/main.cc", "Makefile": "example/Makefile", "README.md": "example/README.md"}


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


@dataclass(frozen=True)
class MeasuredLatency:
    """The end-to-end measurement of the shipped library on its device."""

    device: str
    emulated: bool
    median_ms: float
    noisy: bool


@dataclass(frozen=True)
class BundleSource:
    """What a bundle is made from: the compiled files and what the stages before knew about them."""

    name: str
    library: Path
    onnx: Path
    device: dict[str, Any]
    target: str | dict[str, Any]
    target_triple: str
    versions: dict[str, str]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    parity: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=dict)  # the search's data pipeline, when known
    accuracy: float | None = None  # the searched network's test accuracy
    predicted_ms: float | None = None  # the search's latency prediction
    measured: MeasuredLatency | None = None
    arch: Path | None = None  # arch.json of the search
    records: tuple[Path, ...] = ()  # stage records shipped verbatim (search.json, measure.json)


def _check_tensors(specs: tuple[TensorSpec, ...], what: str, where: str) -> None:
    if not specs:
        raise InputError(f"{where}: the model has no {what}")
    for i, spec in enumerate(specs):
        if not all(isinstance(d, int) and d >= 0 for d in spec.shape):
            raise InputError(f"{where}: {what}[{i}] shape {list(spec.shape)} is not fully static; "
                             "compile with a fixed input shape")
        if spec.dtype not in DLPACK_TYPES:
            raise InputError(f"{where}: {what}[{i}] dtype {spec.dtype!r} is not one of {', '.join(DLPACK_TYPES)}")


def _preprocessing(settings: PackageSettings, known: dict[str, Any], layout: str) -> Preprocessing:
    """[package] settings first, then what the search's data pipeline recorded."""
    merged = {k: v for k, v in known.items() if v not in (None, "", [])}
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
        raise InputError(f"the search's preprocessing record is malformed ({exc})") from None


def _template(name: str) -> bytes:
    return resources.files("nasc.firmware_bridge").joinpath("templates", name).read_bytes()


def build_manifest_members(source: BundleSource, settings: PackageSettings) -> tuple[BundleManifest, list[Member]]:
    """The manifest and every bundle member (manifest.json included) of `source`."""
    where = str(source.library.parent)
    inputs, outputs = source.inputs, source.outputs
    _check_tensors(inputs, "inputs", where)
    _check_tensors(outputs, "outputs", where)
    library, onnx_path = source.library, source.onnx
    for path in (library, onnx_path):
        if not path.is_file():
            raise InputError(f"{path}: missing; compile again")
    onnx_sha = file_sha256(onnx_path)

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
    if source.arch is not None:
        members.append(Member("arch.json", source=source.arch))
        entries.append(("arch", "arch.json"))
    for record in source.records:
        members.append(Member(record.name, source=record))
        entries.append(("record", record.name))
    for template, path in EXAMPLE_FILES.items():
        members.append(Member(path, data=_template(template)))
        entries.append(("example", path))

    preprocessing = _preprocessing(settings, source.preprocessing, inputs[0].layout)
    measured = source.measured
    latency = Latency(
        device=measured.device if measured else str(source.device.get("name", "")),
        emulated=measured.emulated if measured else bool(source.device.get("emulated", False)),
        predicted_ms=source.predicted_ms,
        measured_median_ms=measured.median_ms if measured else None,
        measured_noisy=measured.noisy if measured else None,
    )

    def file_entries(extra: list[FileEntry]) -> tuple[FileEntry, ...]:
        by_path = {m.path: m for m in members}
        result = list(extra)
        for role, path in entries:
            with by_path[path].open() as reader:
                digest, size = sha256_of(reader)
            result.append(FileEntry(path, size, digest, role))
        return tuple(sorted(result, key=lambda e: e.path))

    versions = {**source.versions, "nasc_packager": __version__}
    fields = dict(
        schema=SCHEMA,
        name=source.name,
        device=source.device,
        target=source.target,
        target_triple=source.target_triple,
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
        accuracy=source.accuracy,
        parity=dict(source.parity),
        arch="arch.json" if source.arch is not None else None,
    )
    try:
        # The header does not depend on hashes: render it from a draft with a placeholder entry for itself.
        draft = BundleManifest(**fields, files=file_entries([FileEntry(HEADER_NAME, 0, "0" * 64, "header")]))
        header = render_header(draft).encode()
        members.append(Member(HEADER_NAME, data=header))
        entries.append(("header", HEADER_NAME))
        manifest = BundleManifest(**fields, files=file_entries([]))
    except ValueError as exc:
        raise InputError(f"{where}: cannot describe this model in a bundle: {exc}") from None
    members.append(Member("manifest.json", data=manifest.to_json()))
    return manifest, members


def make_bundle(source: BundleSource, output: Path, settings: PackageSettings | None = None) -> PackageResult:
    """Bundle `source` into `output`, then verify the written bundle (a bad one is removed)."""
    settings = settings or PackageSettings()
    manifest, members = build_manifest_members(source, settings)
    write_bundle(members, output)
    try:
        verify_bundle(output, int(settings.max_member_mb * 1024 * 1024))
    except BundleCorrupt as exc:  # a source file changed while packaging
        output.unlink(missing_ok=True)
        raise InputError(f"{source.library.parent}: the bundle failed its own check, was a file changing? "
                         f"{exc}") from None
    return PackageResult(str(output), file_sha256(output), output.stat().st_size, manifest)

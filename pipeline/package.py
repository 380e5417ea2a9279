"""`nasc package`: a compile output folder (+ the search behind it, + its measurement) -> a verified bundle.

Each stage's record is read through its writer's class (CompiledArtifact, SearchRecord,
MeasureReport) and its facts handed to firmware_bridge as a BundleSource.
"""

from __future__ import annotations

from pathlib import Path

from nasc.compiler.artifact import CompiledArtifact
from nasc.errors import InputError
from nasc.firmware_bridge.package import BundleSource, MeasuredLatency, PackageResult, make_bundle
from nasc.firmware_bridge.settings import PackageSettings
from nasc.fsutil import sha256_file
from nasc.search.outputs import SEARCH_JSON, SearchRecord

from .measure import MEASURE_JSON, MeasureReport


def _check_hash(path: Path, recorded: str, key: str, record: Path) -> None:
    digest = sha256_file(path)
    if digest != recorded:
        raise InputError(f"{path}: sha256 {digest[:16]} differs from {record.name}'s {key} {recorded[:16]}; "
                         "the file changed after compiling, compile again")


def bundle_source(compile_dir: Path, search_dir: Path | None = None) -> BundleSource:
    """What the bundle of `compile_dir` is made from; the search (`search_dir`, else a search.json beside
    compile.json) and measure.json in `compile_dir` are used when present."""
    if not compile_dir.is_dir():
        raise InputError(f"{compile_dir}: no such folder; give the -o folder of nasc compile")
    artifact = CompiledArtifact.load(compile_dir)
    record = compile_dir / "compile.json"
    for path in (artifact.library_path, artifact.onnx_path):
        if not path.is_file():
            raise InputError(f"{path}: missing (named in {record}); compile again into {compile_dir}")
    _check_hash(artifact.onnx_path, artifact.onnx_sha256, "onnx_sha256", record)
    _check_hash(artifact.library_path, artifact.library_sha256, "library_sha256", record)

    search_folder = search_dir if search_dir is not None else compile_dir
    search = None
    if search_dir is not None or (compile_dir / SEARCH_JSON).is_file():
        search = SearchRecord.load(search_folder).finished_result(search_folder)
    measured = None
    if (compile_dir / MEASURE_JSON).is_file():
        report = MeasureReport.load(compile_dir)
        m = report.measurement
        measured = MeasuredLatency(m.device, m.emulated, m.median_ms, m.noisy)
    arch = search_folder / "arch.json" if search is not None else None
    records = tuple(p for p in (search_folder / SEARCH_JSON if search else None, compile_dir / MEASURE_JSON)
                    if p is not None and p.is_file())
    versions = {"tvm": artifact.tvm_version, "nasc": artifact.nasc_version, "onnx": artifact.onnx_version}
    return BundleSource(
        name=f"model-{artifact.device.get('name', 'device')}",
        library=artifact.library_path,
        onnx=artifact.onnx_path,
        device=artifact.device,
        target=artifact.target,
        target_triple=artifact.target_triple,
        versions=versions,
        inputs=artifact.inputs,
        outputs=artifact.outputs,
        parity=artifact.parity.to_dict(),
        preprocessing=search.preprocessing if search else {},
        accuracy=search.test_accuracy if search else None,
        predicted_ms=search.predicted_ms if search else None,
        measured=measured,
        arch=arch if arch is not None and arch.is_file() else None,
        records=records,
    )


def default_bundle_path(compile_dir: Path) -> Path:
    """model-<device>.tar.gz in the current folder, the device named by compile.json."""
    return Path(f"model-{CompiledArtifact.load(compile_dir).device.get('name') or 'device'}.tar.gz")


def package(compile_dir: Path, output: Path | None = None, settings: PackageSettings | None = None,
            search_dir: Path | None = None) -> PackageResult:
    """Bundle the compile output in `compile_dir` into `output` (default: ./model-<device>.tar.gz), then verify it."""
    source = bundle_source(Path(compile_dir), Path(search_dir) if search_dir is not None else None)
    return make_bundle(source, Path(output) if output else default_bundle_path(Path(compile_dir)), settings)

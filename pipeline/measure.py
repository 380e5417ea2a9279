"""`nasc measure`: time a compiled artifact on its device, after checking it against onnxruntime there.

MODEL is a compile output folder (its library is measured as it ships) or an ONNX file (compiled
first, tuned with --tuned). One session does both checks: the library is uploaded once, its
outputs are compared with onnxruntime's on random inputs, then it is timed with the oracle's
protocol. The result is measure.json, written from :class:`MeasureReport`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from nasc.compiler.artifact import COMPILE_JSON, CompiledArtifact
from nasc.compiler.onnx_model import io_specs, load_onnx
from nasc.compiler.runtime import load_vm, run_vm
from nasc.compiler.settings import CompileSettings
from nasc.compiler.verify import ParityReport, check_parity, onnxruntime_runner, random_inputs
from nasc.devices.oracle import Measurement, measure_vm
from nasc.devices.rpc import DeviceSession, open_session
from nasc.devices.settings import MeasureSettings
from nasc.devices.spec import DeviceSpec
from nasc.errors import InputError
from nasc.events import Progress, ignore_progress
from nasc.fsutil import ensure_writable_dir, write_json_atomic
from nasc.records import field_of, read_record

from .compile import compile_onnx
from .config import DEFAULT_TUNED_TRIALS, Config

MEASURE_JSON = "measure.json"


@dataclass(frozen=True)
class MeasureReport:
    """What `nasc measure` found: the measurement, the parity check, where the artifact lies."""

    SCHEMA: ClassVar[str] = "nasc.measure/1"

    model: str
    measurement: Measurement
    parity: ParityReport
    artifact_dir: str
    tuned: bool
    trials_per_task: int

    @property
    def json_path(self) -> Path:
        """Where the report is written: measure.json in the artifact's folder."""
        return Path(self.artifact_dir) / MEASURE_JSON

    def to_dict(self) -> dict[str, Any]:
        """The measure.json content."""
        return {
            "schema": self.SCHEMA, "model": self.model, "measurement": self.measurement.to_dict(),
            "parity": self.parity.to_dict(), "artifact_dir": self.artifact_dir, "tuned": self.tuned,
            "trials_per_task": self.trials_per_task,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | Path = MEASURE_JSON) -> MeasureReport:
        """Inverse of :meth:`to_dict`; a missing or mistyped key is an InputError naming `source` and it."""
        try:
            measurement = Measurement.from_dict(field_of(data, "measurement", dict, source))
            parity = ParityReport.from_dict(field_of(data, "parity", dict, source))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{source}: key 'measurement' or 'parity' is malformed ({exc}); measure again") from None
        return cls(
            model=field_of(data, "model", str, source), measurement=measurement, parity=parity,
            artifact_dir=field_of(data, "artifact_dir", str, source), tuned=field_of(data, "tuned", bool, source),
            trials_per_task=field_of(data, "trials_per_task", int, source),
        )

    @classmethod
    def load(cls, path: str | Path) -> MeasureReport:
        """Read a measure.json (a folder means its measure.json)."""
        file = Path(path)
        if file.is_dir():
            file = file / MEASURE_JSON
        return cls.from_dict(read_record(file, cls.SCHEMA, f"run `nasc measure {file.parent}` to make it"), file)


def compile_settings_for(settings: CompileSettings, tuned: bool) -> CompileSettings:
    """Untuned: no trials; tuned: build.toml's trials, or DEFAULT_TUNED_TRIALS when it sets none."""
    if not tuned:
        return dataclasses.replace(settings, trials=0)
    return settings if settings.trials > 0 else dataclasses.replace(settings, trials=DEFAULT_TUNED_TRIALS)


def measure_on_session(
    session: DeviceSession,
    library: Path,
    onnx_path: Path,
    compile_settings: CompileSettings,
    settings: MeasureSettings,
    what: str,
) -> tuple[Measurement, ParityReport]:
    """Upload `library`, check it against onnxruntime on the device, time it."""
    inputs_spec, outputs_spec = io_specs(load_onnx(onnx_path), str(onnx_path))
    module = session.load_library(library)
    vm = load_vm(module, session.dev)
    where = session.address + (" (EMULATED)" if session.device.emulated else "")
    parity = check_parity(
        lambda xs: run_vm(vm, xs, session.dev), onnxruntime_runner(onnx_path, inputs_spec), inputs_spec,
        outputs_spec, samples=compile_settings.verify_samples, atol=compile_settings.atol,
        rtol=compile_settings.rtol, seed=compile_settings.seed, where=where,
        noise_factor=compile_settings.noise_factor, scale_rtol=compile_settings.scale_rtol,
    )
    measurement = measure_vm(
        vm, session.dev, random_inputs(inputs_spec, compile_settings.seed), settings,
        what=what, device=session.device.name, emulated=session.device.emulated,
        address=session.address, target=session.device.target_json(),
        extra={"threads": session.check_threads()},
    )
    return measurement, parity


def _artifact_device(artifact: CompiledArtifact, device: DeviceSpec | None, folder: Path) -> DeviceSpec:
    """The device the artifact was compiled for; a different `device` asked for is refused."""
    built_for = DeviceSpec.from_dict(artifact.device)
    if device is not None and device.fingerprint() != built_for.fingerprint():
        raise InputError(
            f"{folder / COMPILE_JSON}: the artifact was compiled for '{built_for.name}', not '{device.name}'; "
            f"compile it for {device.name} first, or omit --device"
        )
    return device or built_for


def measure_model(
    model: Path,
    device: DeviceSpec | None,
    config: Config,
    *,
    tuned: bool = False,
    out_dir: Path | None = None,
    progress: Progress = ignore_progress,
) -> MeasureReport:
    """Measure a compile output folder as it is, or compile an ONNX file first (tuned or not); write measure.json.

    For a folder, `device` defaults to the one it was compiled for and measure.json goes into it.
    """
    model = Path(model)
    cache_dir = config.cache_dir()
    if model.is_dir():
        if tuned:
            raise InputError(f"{model}: --tuned applies to an ONNX file; a compile output folder is measured as built")
        artifact = CompiledArtifact.load(model)
        spec = _artifact_device(artifact, device, model)
        if out_dir is not None and Path(out_dir).resolve() != model.resolve():
            raise InputError(f"{model}: measure.json of a compile output folder is written into it; drop -o")
        compile_settings = config.compile
        trials = artifact.tuning.trials_per_task
        ensure_writable_dir(model)
    elif model.is_file():
        if device is None:
            raise InputError(f"{model}: name the device to compile this ONNX file for (--device NAME)")
        spec = device
        compile_settings = compile_settings_for(config.compile, tuned)
        out = Path(out_dir) if out_dir else config.output_dir() / "measure" / f"{model.stem}-{spec.name}"
        artifact = compile_onnx(model, spec, compile_settings, out, cache_dir, verify=False, progress=progress)
        trials = compile_settings.trials
    else:
        raise InputError(f"{model}: no such ONNX file or compile output folder")
    with open_session(spec, cache_dir, config.measure) as session:
        measurement, parity = measure_on_session(
            session, artifact.library_path, artifact.onnx_path, compile_settings, config.measure,
            what=model.name,
        )
    report = MeasureReport(
        model=str(model), measurement=measurement, parity=parity, artifact_dir=str(artifact.directory),
        tuned=trials > 0, trials_per_task=trials,
    )
    write_json_atomic(report.json_path, report.to_dict())
    return report

"""`nasc measure`: compile an ONNX model for a device, check it against onnxruntime there, time it.

One session does both: the library is uploaded once, its outputs are compared with onnxruntime's
on random inputs, then it is timed with the oracle's protocol. The result is written as JSON.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasc.config import CompileSettings, Config
from nasc.errors import InputError

from .oracle import Measurement, measure_vm, write_json_atomic
from .rpc import DeviceSession, open_session
from .settings import MeasureSettings
from .spec import DeviceSpec

DEFAULT_TUNED_TRIALS = 32  # per task, when --tuned is asked and build.toml sets no [compile].trials


@dataclass(frozen=True)
class MeasureReport:
    """What `nasc measure` found: the measurement, the parity check, where the artifact lies."""

    model: str
    measurement: Measurement
    parity: dict[str, Any]
    artifact_dir: str
    tuned: bool
    trials_per_task: int
    json_path: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "model": self.model, "measurement": self.measurement.to_dict(), "parity": self.parity,
            "artifact_dir": self.artifact_dir, "tuned": self.tuned, "trials_per_task": self.trials_per_task,
            "json_path": self.json_path,
        }


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
) -> tuple[Measurement, dict[str, Any]]:
    """Upload `library`, check it against onnxruntime on the device, time it."""
    from nasc.compiler.onnx_model import io_specs, load_onnx
    from nasc.compiler.runtime import load_vm, run_vm
    from nasc.compiler.verify import check_parity, onnxruntime_runner, random_inputs

    inputs_spec, outputs_spec = io_specs(load_onnx(onnx_path), str(onnx_path))
    module = session.load_library(library)
    vm = load_vm(module, session.dev)
    where = session.address + (" (EMULATED)" if session.device.emulated else "")
    parity = check_parity(
        lambda xs: run_vm(vm, xs, session.dev), onnxruntime_runner(onnx_path, inputs_spec), inputs_spec,
        outputs_spec, samples=compile_settings.verify_samples, atol=compile_settings.atol,
        rtol=compile_settings.rtol, seed=compile_settings.seed, where=where,
    )
    measurement = measure_vm(
        vm, session.dev, random_inputs(inputs_spec, compile_settings.seed), settings,
        what=what, device=session.device.name, emulated=session.device.emulated,
        address=session.address, target=session.device.target_json(),
    )
    return measurement, parity.to_dict()


def measure_model(
    onnx_path: Path,
    device: DeviceSpec,
    config: Config,
    *,
    tuned: bool = False,
    out_dir: Path | None = None,
    reporter: Any = None,
) -> MeasureReport:
    """Compile `onnx_path` for `device` (tuned or not), check it on the device, time it, write measure.json."""
    from nasc.compiler.pipeline import compile_onnx

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise InputError(f"{onnx_path}: no such ONNX file")
    compile_settings = compile_settings_for(config.compile, tuned)
    out = Path(out_dir) if out_dir else config.output_dir() / "measure" / f"{onnx_path.stem}-{device.name}"
    cache_dir = config.cache_dir()
    artifact = compile_onnx(onnx_path, device, compile_settings, out, cache_dir, verify=False, reporter=reporter)
    with open_session(device, cache_dir, config.measure) as session:
        measurement, parity = measure_on_session(
            session, artifact.library_path, artifact.onnx_path, compile_settings, config.measure,
            what=onnx_path.name,
        )
    json_path = out / "measure.json"
    report = MeasureReport(
        model=str(onnx_path), measurement=measurement, parity=parity, artifact_dir=str(out), tuned=tuned,
        trials_per_task=compile_settings.trials, json_path=str(json_path),
    )
    write_json_atomic(json_path, report.to_dict())
    return report

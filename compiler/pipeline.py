"""compile_onnx: ONNX file -> tuned, built, verified artifact in an output folder.

The output folder only ever receives a complete, verified artifact: everything is staged in a
temporary folder beside it and moved in at the end (compile.json last).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import onnx

from nasc import __version__
from nasc.config import CompileSettings
from nasc.devices.spec import DeviceSpec
from nasc.fsutil import sha256_file, write_json_atomic

from .artifact import COMPILE_JSON, LIBRARY_NAME, ONNX_NAME, CompiledArtifact
from .build import compile_module, export_executable, lower_for_tuning
from .frontend import import_onnx
from .onnx_model import io_specs, load_onnx
from .runtime import load_vm, run_vm
from .target import library_linker, target_dict, target_triple, tvm_target
from .tune import TuningReporter, TuningSummary, database_dir_for, open_database, tune_module
from .verify import ParityReport, Runner, check_parity, onnxruntime_runner


class CompileReporter(TuningReporter):
    """Progress of a compile; every method is optional to override."""

    def stage(self, name: str, detail: str = "") -> None:
        """A new stage begins (import, tune, build, verify, write)."""

    def tuning_started(self, total_trials: int, tasks: int) -> None:
        pass

    def tuning_progress(self, trials_done: int, best_estimate_ms: float | None) -> None:
        pass


def runs_on_host(device: DeviceSpec) -> bool:
    """True when the device is this machine's CPU (no RPC needed to run its code)."""
    return device.connection.kind == "local" and not device.is_cross


@contextlib.contextmanager
def artifact_runner(device: DeviceSpec, library: Path, cache_dir: Path) -> Iterator[tuple[Runner, str]]:
    """A function running the library on the device (in-process for the host, else over RPC)."""
    if runs_on_host(device):
        import tvm

        dev = tvm.cpu(0)
        vm = load_vm(tvm.runtime.load_module(str(library)), dev)
        yield (lambda inputs: run_vm(vm, inputs, dev)), "this host (in-process)"
        return
    from nasc.devices.rpc import open_session

    with open_session(device, cache_dir) as session:
        module = session.load_library(library)
        vm = load_vm(module, session.dev)
        where = session.address + (" (EMULATED)" if device.emulated and "EMULATED" not in session.address else "")
        yield (lambda inputs: run_vm(vm, inputs, session.dev)), where


def _tune(mod, target, device: DeviceSpec, settings: CompileSettings, database_dir: Path, cache_dir: Path,
          reporter: CompileReporter) -> TuningSummary:
    if settings.trials == 0:
        return TuningSummary(database_dir=str(database_dir), trials_per_task=0, emulated=device.emulated)
    if not runs_on_host(device):
        from .remote_tuning import tune_on_device

        label = " (EMULATED timings)" if device.emulated else ""
        reporter.stage("tune", f"{settings.trials} trials per task on average, measured on {device.name} "
                               f"over RPC{label}")
        return tune_on_device(lower_for_tuning(mod, target), target, device, database_dir, settings, cache_dir,
                              reporter)
    reporter.stage("tune", f"{settings.trials} trials per task on average, spread by run-time weight")
    return tune_module(
        lower_for_tuning(mod, target), target, database_dir, settings.trials,
        trials_per_iteration=settings.trials_per_iteration, seed=settings.seed, reporter=reporter,
    )


def compile_onnx(
    onnx_path: str | Path,
    device: DeviceSpec,
    settings: CompileSettings,
    out_dir: str | Path,
    cache_dir: str | Path,
    *,
    verify: bool = True,
    reporter: CompileReporter | None = None,
) -> CompiledArtifact:
    """Compile an ONNX file for `device` into `out_dir` (model.so, model.onnx, compile.json)."""
    import tvm

    reporter = reporter or CompileReporter()
    started = time.perf_counter()
    source = Path(onnx_path)
    out = Path(out_dir)
    cache = Path(cache_dir)

    reporter.stage("import", str(source))
    model = load_onnx(source)
    inputs, outputs = io_specs(model, str(source))
    mod = import_onnx(model, str(source))
    target = tvm_target(device)
    library_linker(device)  # a missing cross compiler fails now, not after tuning
    database_dir = database_dir_for(cache, target, device)

    tuning = _tune(mod, target, device, settings, database_dir, cache, reporter)
    reporter.stage("build", f"for {device.name}")
    executable, applied = compile_module(mod, device, open_database(database_dir))
    tuning = dataclasses.replace(tuning, records_applied=applied)

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".nasc-compile-", dir=out) as staging_name:
        staging = Path(staging_name)
        library = export_executable(executable, device, staging / LIBRARY_NAME)
        shutil.copyfile(source, staging / ONNX_NAME)
        if verify:
            reporter.stage("verify", "against onnxruntime")
            with artifact_runner(device, library, cache) as (run, where):
                parity = check_parity(
                    run, onnxruntime_runner(staging / ONNX_NAME, inputs), inputs, outputs,
                    samples=settings.verify_samples, atol=settings.atol, rtol=settings.rtol,
                    seed=settings.seed, where=where,
                )
        else:
            parity = ParityReport.not_checked("skipped (--no-verify)")
        artifact = CompiledArtifact(
            directory=str(out),
            device=device.to_dict(),
            library=LIBRARY_NAME,
            library_sha256=sha256_file(library),
            onnx=ONNX_NAME,
            onnx_sha256=sha256_file(staging / ONNX_NAME),
            target=target_dict(target),
            target_triple=target_triple(target),
            tvm_version=tvm.__version__,
            nasc_version=__version__,
            onnx_version=onnx.__version__,
            inputs=inputs,
            outputs=outputs,
            tuning=tuning,
            parity=parity,
            compile_seconds=time.perf_counter() - started,
        )
        reporter.stage("write", str(out))
        for name in (LIBRARY_NAME, ONNX_NAME):
            os.replace(staging / name, out / name)
        write_json_atomic(out / COMPILE_JSON, artifact.to_dict())
    return artifact

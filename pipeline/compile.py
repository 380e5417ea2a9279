"""compile_onnx: ONNX file -> tuned, built, verified artifact in an output folder (`nasc compile`).

A flow across rooms: the compiler imports, tunes, builds and checks; devices/ opens the sessions
and endpoints the device is reached through (starting a local or emulated server where needed).
The output folder only ever receives a complete, verified artifact: everything is staged in a
temporary folder beside it and moved in at the end (compile.json last).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import onnx

from nasc import __version__
from nasc.compiler.artifact import COMPILE_JSON, LIBRARY_NAME, ONNX_NAME, CompiledArtifact
from nasc.compiler.build import build_lowered, export_executable, kernel_counts, lower_and_apply, lower_for_tuning
from nasc.compiler.frontend import import_onnx
from nasc.compiler.onnx_model import io_specs, load_onnx
from nasc.compiler.remote_tuning import tune_on_device
from nasc.compiler.runtime import host_runner, load_vm, run_vm
from nasc.compiler.settings import CompileSettings
from nasc.compiler.target import library_linker, target_dict, target_triple, tvm_target
from nasc.compiler.toolchain import tvm_version
from nasc.compiler.tune import TuningSummary, database_dir_for, host_measurement, open_database, tune_module
from nasc.compiler.verify import ParityReport, Runner, check_parity, onnxruntime_runner
from nasc.devices.endpoint import device_endpoint
from nasc.devices.rpc import open_session
from nasc.devices.spec import DeviceSpec
from nasc.errors import DeviceUnreachable
from nasc.events import Progress, ProgressEvent, ignore_progress
from nasc.fsutil import ensure_writable_dir, sha256_file, write_json_atomic


def runs_on_host(device: DeviceSpec) -> bool:
    """True when the device is this machine's CPU (no RPC needed to run its code)."""
    return device.connection.kind == "local" and not device.is_cross


@contextlib.contextmanager
def artifact_runner(device: DeviceSpec, library: Path, cache_dir: Path) -> Iterator[tuple[Runner, str]]:
    """A function running the library on the device (in-process for the host, else over RPC)."""
    if runs_on_host(device):
        yield host_runner(library), "this host (in-process)"
        return
    with open_session(device, cache_dir) as session:
        module = session.load_library(library)
        vm = load_vm(module, session.dev)
        where = session.address + (" (EMULATED)" if device.emulated and "EMULATED" not in session.address else "")
        yield (lambda inputs: run_vm(vm, inputs, session.dev)), where


def tune_for_device(mods: Sequence[Any], target, device: DeviceSpec, settings: CompileSettings,
                    database_dir: Path, cache_dir: Path, progress: Progress) -> TuningSummary:
    """Tune `mods` (one network, or a table's blocks as one run) at settings.trials in the device's database:
    on this host, or over RPC on the device."""
    if settings.trials == 0:
        return TuningSummary(database_dir=str(database_dir), trials_per_task=0, emulated=device.emulated)
    lowered = [lower_for_tuning(mod, target) for mod in mods]
    if not runs_on_host(device):
        label = " (EMULATED timings)" if device.emulated else ""
        progress(ProgressEvent.note("tune", f"{settings.trials} trials per task on average, measured on "
                                            f"{device.name} over RPC{label}"))
        return tune_on_device(lowered, target, device,
                              functools.partial(device_endpoint, device, cache_dir), database_dir, settings,
                              progress)
    progress(ProgressEvent.note("tune", f"{settings.trials} trials per task on average, spread by run-time weight"))
    return tune_module(
        lowered, target, database_dir, settings.trials,
        trials_per_iteration=settings.trials_per_iteration, seed=settings.seed, progress=progress,
        measurement=functools.partial(host_measurement, device.threads),
    )


def _unreachable_hint(device: DeviceSpec, exc: DeviceUnreachable) -> DeviceUnreachable:
    return DeviceUnreachable(f"{exc}\n(to build for '{device.name}' without reaching it now, compile with "
                             "--no-verify: the artifact is then not checked against onnxruntime)")


def compile_onnx(
    onnx_path: str | Path,
    device: DeviceSpec,
    settings: CompileSettings,
    out_dir: str | Path,
    cache_dir: str | Path,
    *,
    verify: bool = True,
    progress: Progress = ignore_progress,
) -> CompiledArtifact:
    """Compile an ONNX file for `device` into `out_dir` (model.so, model.onnx, compile.json).

    A folder that cannot be written, or (with `verify`) a device that cannot be reached, is refused
    before any tuning starts.
    """
    started = time.perf_counter()
    source = Path(onnx_path)
    out = ensure_writable_dir(out_dir)
    cache = Path(cache_dir)

    progress(ProgressEvent.note("import", str(source)))
    model = load_onnx(source)
    inputs, outputs = io_specs(model, str(source))
    mod = import_onnx(model, str(source))
    target = tvm_target(device)
    library_linker(device)  # a missing cross compiler fails now, not after tuning
    if verify and device.connection.kind in ("rpc", "tracker"):
        try:  # a board that cannot be reached fails now, not after tuning
            with open_session(device, cache):
                pass
        except DeviceUnreachable as exc:
            raise _unreachable_hint(device, exc) from None
    database_dir = database_dir_for(cache, target, device)

    tuning = tune_for_device([mod], target, device, settings, database_dir, cache, progress)
    progress(ProgressEvent.note("build", f"for {device.name}"))
    lowered, applied = lower_and_apply(mod, device, open_database(database_dir))
    kernels = kernel_counts(lowered)
    executable = build_lowered(lowered, device)
    tuning = dataclasses.replace(tuning, records_applied=applied)

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".nasc-compile-", dir=out) as staging_name:
        staging = Path(staging_name)
        library = export_executable(executable, device, staging / LIBRARY_NAME)
        shutil.copyfile(source, staging / ONNX_NAME)
        if verify:
            progress(ProgressEvent.note("verify", "against onnxruntime"))
            try:
                with artifact_runner(device, library, cache) as (run, where):
                    parity = check_parity(
                        run, onnxruntime_runner(staging / ONNX_NAME, inputs), inputs, outputs,
                        samples=settings.verify_samples, atol=settings.atol, rtol=settings.rtol,
                        noise_factor=settings.noise_factor, scale_rtol=settings.scale_rtol,
                        seed=settings.seed, where=where,
                    )
            except DeviceUnreachable as exc:
                raise _unreachable_hint(device, exc) from None
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
            tvm_version=tvm_version(),
            nasc_version=__version__,
            onnx_version=onnx.__version__,
            inputs=inputs,
            outputs=outputs,
            tuning=tuning,
            parity=parity,
            compile_seconds=time.perf_counter() - started,
            kernels=kernels,
        )
        progress(ProgressEvent.note("write", str(out)))
        for name in (LIBRARY_NAME, ONNX_NAME):
            os.replace(staging / name, out / name)
        write_json_atomic(out / COMPILE_JSON, artifact.to_dict())
    return artifact

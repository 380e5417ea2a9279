"""One block -> ONNX -> a library for the device, cached by content (what the latency table measures).

Compiles run in persistent worker processes: TVM's ONNX importer is not thread-safe, and on a
multi-core host the builds run side by side. A library is cached under the cache dir by the hash of
the ONNX bytes, the target JSON, the cross compiler and the TVM version, and written atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from nasc.compiler.build import build_library
from nasc.compiler.export import export_onnx
from nasc.compiler.toolchain import toolchain_id
from nasc.devices.spec import DeviceSpec
from nasc.errors import CompileError
from nasc.signature import BlockSignature

BlockFactory = Callable[[BlockSignature], Any]  # -> torch.nn.Module

_export_lock = threading.Lock()  # torch's exporter and TVM's importer keep global state


def block_dir(cache_dir: Path, block: BlockSignature) -> Path:
    """Where a block's ONNX and libraries live."""
    digest = hashlib.sha256(block.key().encode()).hexdigest()[:16]
    return Path(cache_dir) / "blocks" / f"{block.op}-{digest}"


def export_block(block: BlockSignature, factory: BlockFactory, cache_dir: Path, seed: int = 0) -> Path:
    """Export `factory(block)` (eval mode, weights from `seed`) to ONNX once; returns the .onnx path."""
    out = block_dir(cache_dir, block) / "block.onnx"
    if out.is_file():
        return out
    import torch

    with _export_lock:
        torch.manual_seed(seed)
        module = factory(block).eval()
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".block.{os.getpid()}.{threading.get_ident()}.onnx")
        try:
            _export(module, block.input_shape(), tmp)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    return out


def _export(module: Any, input_shape: tuple[int, ...], path: Path) -> None:
    export_onnx(module, input_shape, path)


def library_path(onnx_path: Path, device: DeviceSpec, toolchain: str | None = None) -> Path:
    """The cached library for `onnx_path` on `device` (content-addressed; `toolchain` as the latency table
    names it, e.g. tuned at N trials per task: default, the untuned toolchain)."""
    h = hashlib.sha256(onnx_path.read_bytes())
    h.update(json.dumps([device.target_json(), device.host_target, device.cross_compiler,
                         toolchain or toolchain_id()]).encode())
    return onnx_path.parent / f"lib-{h.hexdigest()[:16]}.so"


def compile_library(onnx_path: str, device_dict: dict[str, Any], out_path: str, tuning_dir: str | None = None) -> str:
    """Build `onnx_path` for the device into `out_path` (atomic), applying the tuning records in
    `tuning_dir` if given. Runs in a compile worker process."""
    out = Path(out_path)
    if out.is_file():
        return out_path
    device = DeviceSpec.from_dict(device_dict)
    fd, tmp_name = tempfile.mkstemp(prefix=".lib-", suffix=".so", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        build_library(Path(onnx_path), device, tmp, tuning_dir=Path(tuning_dir) if tuning_dir else None)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


class BlockCompiler:
    """``jobs`` persistent compile processes (``python -m nasc.pipeline.compile_worker``) fed by threads.

    Plain subprocesses, not multiprocessing: nothing re-imports the caller's main module, a TVM
    crash costs one job (the worker is restarted), and C++ build noise stays out of the terminal.
    """

    def __init__(self, device: DeviceSpec, jobs: int | None = None, *, tuning_dir: Path | None = None,
                 toolchain: str | None = None) -> None:
        self.device = device
        self.jobs = max(1, jobs or (os.cpu_count() or 1))
        self.tuning_dir = tuning_dir  # tuning records to apply (a tuned latency table), keyed by `toolchain`
        self.toolchain = toolchain
        self._jobs: queue.Queue[tuple[str, str, Future[str]] | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._procs: list[subprocess.Popen[str]] = []
        self._lock = threading.Lock()

    def __enter__(self) -> BlockCompiler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers (pending jobs are cancelled)."""
        for _ in self._threads:
            self._jobs.put(None)
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[2].cancel()
        for _ in self._threads:
            self._jobs.put(None)
        with self._lock:
            for proc in self._procs:
                _stop_worker(proc)
        for t in self._threads:
            t.join(timeout=10)
        self._threads.clear()

    def _spawn(self) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nasc.pipeline.compile_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True,
        )
        with self._lock:
            self._procs.append(proc)
        return proc

    def _loop(self) -> None:
        proc: subprocess.Popen[str] | None = None
        while True:
            item = self._jobs.get()
            if item is None:
                break
            onnx_path, out, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                if proc is None or proc.poll() is not None:
                    proc = self._spawn()
                assert proc.stdin is not None and proc.stdout is not None
                job = {"onnx": onnx_path, "device": self.device.to_dict(), "out": out,
                       "tuning_dir": str(self.tuning_dir) if self.tuning_dir else None}
                proc.stdin.write(json.dumps(job) + "\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
                if not line:
                    raise CompileError(f"the compile worker died (exit code {proc.wait()}) while building {onnx_path}")
                result = json.loads(line)
                if result.get("ok"):
                    fut.set_result(result["out"])
                else:
                    fut.set_exception(CompileError(result.get("error", "unknown error")))
            except BaseException as exc:
                fut.set_exception(exc)
                if proc is not None:
                    _stop_worker(proc)
                proc = None

    def submit(self, onnx_path: Path) -> Future[str]:
        """Compile in a worker (an already cached library returns at once)."""
        out = library_path(onnx_path, self.device, self.toolchain)
        fut: Future[str] = Future()
        if out.is_file():
            fut.set_result(str(out))
            return fut
        if len(self._threads) < self.jobs:
            t = threading.Thread(target=self._loop, daemon=True, name=f"compile-{len(self._threads)}")
            t.start()
            self._threads.append(t)
        self._jobs.put((str(onnx_path), str(out), fut))
        return fut


def _stop_worker(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def compile_error(block: BlockSignature, exc: BaseException) -> CompileError:
    """A CompileError naming the block."""
    if isinstance(exc, CompileError):
        return CompileError(f"block {block.key()}: {exc}")
    text = str(exc).strip().splitlines()
    return CompileError(f"block {block.key()}: TVM build failed: {text[-1] if text else type(exc).__name__}")


def block_input(block: BlockSignature, seed: int = 0) -> np.ndarray:
    """A deterministic random input for timing `block`."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal(block.input_shape()).astype("float32")

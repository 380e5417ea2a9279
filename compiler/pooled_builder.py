"""A MetaSchedule builder that keeps its worker processes between batches.

TVM's LocalBuilder starts a new process pool for every batch of candidates; each worker then
imports TVM and its tensor intrinsics again (see tensor_intrinsics.py: seconds per worker even
with that module), which dominates tuning with small batches. This builder keeps
one pool and recycles each worker after a number of builds instead (the reason LocalBuilder
restarts is a slow leak in long-lived workers).

``f_export`` replaces TVM's default export (a .tar the runner's side links with its own g++): for a
device reached over RPC, remote_tuning.CrossExport links a .so with the device's cross compiler.
It runs in the worker processes, so it must be picklable and importable there (a module-level
function or an instance of a module-level class; not a lambda or a closure over local state).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
from tvm.s_tir.meta_schedule.builder.local_builder import _serialize_params, _worker_func
from tvm.support.popen_pool import PopenPoolExecutor, StatusKind

from .tensor_intrinsics import import_tensor_intrinsics

# A worker is replaced after this many builds. Starting one costs seconds (TVM, then its tensor
# intrinsics, which every build needs), so not after every batch as LocalBuilder does.
WORKER_RECYCLE_AFTER = 128


@derived_object
class PooledLocalBuilder(PyBuilder):
    """LocalBuilder with a persistent, recycling worker pool."""

    def __init__(self, *, max_workers: int, timeout_sec: float, f_export: Callable[[Any], str] | None = None) -> None:
        super().__init__()
        self.max_workers = max_workers
        self.timeout_sec = timeout_sec
        self.f_export = f_export
        self._pool: Any = None

    def _executor(self) -> Any:
        if self._pool is None:
            self._pool = PopenPoolExecutor(
                max_workers=self.max_workers,
                timeout=self.timeout_sec,
                maximum_process_uses=WORKER_RECYCLE_AFTER,
                initializer=import_tensor_intrinsics,
            )
        return self._pool

    def build(self, build_inputs: list[Any]) -> list[BuilderResult]:
        """Build each candidate in a worker; errors and timeouts become failed results."""
        results: list[BuilderResult] = []
        jobs = [(None, self.f_export, b.mod, b.target, _serialize_params(b.params)) for b in build_inputs]
        for outcome in self._executor().map_with_error_catching(lambda job: _worker_func(*job), jobs):
            if outcome.status == StatusKind.COMPLETE:
                results.append(BuilderResult(outcome.value, None))
            elif outcome.status == StatusKind.TIMEOUT:
                results.append(BuilderResult(None, f"PooledLocalBuilder: timeout after {self.timeout_sec} s"))
            else:
                results.append(BuilderResult(None, f"PooledLocalBuilder: exception\n{outcome.value}"))
        return results

    def shutdown(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

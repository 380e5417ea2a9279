"""The toolchain id: the installed TVM with how nasc lowers and runs, for keys of anything built.

A latency or a built block from another TVM, VM mode, convolution lowering or layout is never
reused: the latency table and the block cache key their entries by this string.
"""

from __future__ import annotations

from .blocked_layout import LAYOUT
from .build import STRIDED_CONV, VM_EXEC_MODE


def toolchain_id() -> str:
    """E.g. "0.27.0.post1 vm=compiled conv=polyphase layout=NCHWc-padded-isa"."""
    import tvm

    return f"{tvm.__version__} vm={VM_EXEC_MODE} conv={STRIDED_CONV} layout={LAYOUT}"


def table_toolchain(trials: int) -> str:
    """The toolchain id of latency-table entries: blocks built with default schedules (``trials`` 0) or
    tuned at ``trials`` per task with MetaSchedule, as the final compile at that budget ships them.
    Untuned and tuned entries of one block get different keys and both stay in the table."""
    if trials < 0:
        raise ValueError(f"trials must be >= 0, got {trials}")
    return toolchain_id() if trials == 0 else f"{toolchain_id()} tuned={trials}"


def table_trials_of(toolchain: str) -> int | None:
    """Inverse of :func:`table_toolchain` for this toolchain: the trials per task (0: untuned), or None for
    an entry of another toolchain (stale)."""
    current = toolchain_id()
    if toolchain == current:
        return 0
    prefix = f"{current} tuned="
    return int(toolchain.removeprefix(prefix)) if toolchain.startswith(prefix) else None


def tvm_version() -> str:
    """The installed TVM's version."""
    import tvm

    return str(tvm.__version__)

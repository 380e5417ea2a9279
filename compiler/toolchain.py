"""The toolchain id: the installed TVM with how nasc lowers and runs, for keys of anything built.

A latency or a built block from another TVM, VM mode, convolution lowering, layout, untuned
schedule or sigmoid lowering is never
reused: the latency table and the block cache key their entries by this string.
"""

from __future__ import annotations

from .blocked_layout import LAYOUT
from .build import STRIDED_CONV, VM_EXEC_MODE
from .default_schedule import UNTUNED
from .fast_math import SIGMOID


def toolchain_id() -> str:
    """E.g. "0.27.0.post1 vm=compiled conv=polyphase layout=NCHWc-padded-isa-gather untuned=fixed-tiles-3
    sigmoid=fast-exp"."""
    import tvm

    return (f"{tvm.__version__} vm={VM_EXEC_MODE} conv={STRIDED_CONV} layout={LAYOUT} untuned={UNTUNED} "
            f"sigmoid={SIGMOID}")


def table_toolchain(trials: int, threads: int = 0) -> str:
    """The toolchain id of latency-table entries: blocks built with default schedules (``trials`` 0) or
    tuned at ``trials`` per task with MetaSchedule, as the final compile at that budget ships them, timed
    with ``threads`` runtime threads on the device (0: as its server was started). Entries that differ in
    either get different keys and all stay in the table."""
    if trials < 0 or threads < 0:
        raise ValueError(f"trials and threads must be >= 0, got {trials} and {threads}")
    return toolchain_id() + (f" tuned={trials}" if trials else "") + (f" threads={threads}" if threads else "")


def table_trials_of(toolchain: str) -> tuple[int, int] | None:
    """Inverse of :func:`table_toolchain` for this toolchain: (trials per task, threads), 0 for untuned and
    for the server's own thread setting; None for an entry of another toolchain (stale)."""
    current = toolchain_id()
    if toolchain != current and not toolchain.startswith(current + " "):
        return None
    fields = dict(part.split("=", 1) for part in toolchain.removeprefix(current).split())
    if set(fields) - {"tuned", "threads"} or not all(v.isdigit() for v in fields.values()):
        return None
    return int(fields.get("tuned", 0)), int(fields.get("threads", 0))


def tvm_version() -> str:
    """The installed TVM's version."""
    import tvm

    return str(tvm.__version__)

"""The untuned schedule of a data-movement or element-wise kernel: parallel over its outer loops when
it is big enough, vectorised along its innermost one.

TVM's own lowering leaves such kernels (layout changes, the channel gathers of channel_gather.py,
element-wise operators not fused into a convolution) as serial scalar loops. A kernel of a few
thousand elements stays on one thread: the thread pool's fork and join would cost about as much as
the copy it shares out (issue 26: the time between kernels).
"""

from __future__ import annotations

import math
from typing import Any

PARALLEL_MIN_ELEMENTS = 16384  # output elements below which a kernel runs on one thread
VECTOR_EXTENTS = (4, 8, 16, 32, 64)  # innermost loop extents vectorised whole


def injective_schedule(mod: Any) -> Any:
    """The schedule for a tuning task whose blocks are all spatial (no reduction), the last one the
    only output; None for any other task."""
    import tvm

    try:
        sch = tvm.s_tir.Schedule(mod)
        blocks = sch.get_child_blocks(sch.get_sblock("root"))
    except Exception:  # no root block, or more than one function
        return None
    if not blocks or any(iv.iter_type != tvm.tirx.IterVar.DataPar for b in blocks for iv in sch.get(b).iter_vars):
        return None
    try:
        for block in blocks[:-1]:
            sch.compute_inline(block)
        loops = sch.get_loops(blocks[-1])
        extents = [int(sch.get(loop).extent) for loop in loops]
        if len(loops) > 1 and extents[-1] in VECTOR_EXTENTS:
            sch.vectorize(loops[-1])
        if len(loops) > 1 and math.prod(extents) >= PARALLEL_MIN_ELEMENTS:
            sch.parallel(sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0])
    except tvm.s_tir.ScheduleError:
        return None
    return sch

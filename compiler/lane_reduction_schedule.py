"""The untuned schedule of a reduction over a blocked tensor's spatial axes: pooling and spatial means.

In the blocked layout a max pool or a squeeze-excitation's spatial mean reduces over rows and columns
while its innermost axis, the channel block's lanes, stays spatial: each output vector is an
element-wise max or sum of input vectors. TVM's own lowering runs it as serial scalar loops with
the lanes innermost in every reduction step. This schedule moves the lanes inside the reduction,
vectorises them and runs the outer loops in parallel when the kernel is big enough
(injective_schedule.PARALLEL_MIN_ELEMENTS); a padding block before it is computed inline and an
element-wise block after it (a mean's division) per output vector.
"""

from __future__ import annotations

import math
from typing import Any

from .injective_schedule import PARALLEL_MIN_ELEMENTS, VECTOR_EXTENTS


def lane_reduction_schedule(mod: Any) -> Any:
    """The schedule for a task with one reduction block whose innermost spatial axis is a vector
    width (4 to 64), spatial blocks around it; None for any other task."""
    import tvm

    data_par, comm_reduce = tvm.tirx.IterVar.DataPar, tvm.tirx.IterVar.CommReduce
    try:
        sch = tvm.s_tir.Schedule(mod)
        blocks = sch.get_child_blocks(sch.get_sblock("root"))
    except Exception:  # no root block, or more than one function
        return None
    kinds = [{iv.iter_type for iv in sch.get(b).iter_vars} for b in blocks]
    reducing = [i for i, k in enumerate(kinds) if comm_reduce in k]
    if len(reducing) != 1 or any(not k <= {data_par} for i, k in enumerate(kinds) if i != reducing[0]):
        return None
    index = reducing[0]
    reduction, before, after = blocks[index], blocks[:index], blocks[index + 1:]
    iter_types = [iv.iter_type for iv in sch.get(reduction).iter_vars]
    try:
        for block in before:
            sch.compute_inline(block)
        for block in after[:-1]:
            sch.compute_inline(block)
        loops = sch.get_loops(reduction)
        if len(loops) != len(iter_types):
            return None
        spatial = [loop for loop, kind in zip(loops, iter_types, strict=True) if kind == data_par]
        reduce = [loop for loop, kind in zip(loops, iter_types, strict=True) if kind == comm_reduce]
        extents = [int(sch.get(loop).extent) for loop in loops]
        if len(spatial) < 2 or not reduce or int(sch.get(spatial[-1]).extent) not in VECTOR_EXTENTS:
            return None
        sch.reorder(*spatial[:-1], *reduce, spatial[-1])
        outer = sch.fuse(*spatial[:-1]) if len(spatial) > 2 else spatial[0]
        if after:
            sch.reverse_compute_at(after[-1], outer)
            tail = sch.get_loops(after[-1])[-1]
            if int(sch.get(tail).extent) in VECTOR_EXTENTS:
                sch.vectorize(tail)
        sch.vectorize(spatial[-1])
        if math.prod(extents) >= PARALLEL_MIN_ELEMENTS:
            sch.parallel(outer)
        sch.decompose_reduction(reduction, reduce[0])
    except tvm.s_tir.ScheduleError:
        return None
    return sch

"""The untuned schedule of a batch-1 matrix-vector product (a classifier's Linear layer, with its
bias and activation fused after it).

TVM's default lowering runs it as one serial scalar loop nest, and DLight's CPU GEMV rule only takes
a reduction along contiguous memory; after import a Linear layer's weight is [in, out], so the
reduction runs across rows. This schedule keeps that order, which reads the weight once, front to
back: the outputs are cut into vector-wide chunks run in parallel, and for each input element a
chunk does one vector multiply-add over a contiguous row segment of the weight.
"""

from __future__ import annotations

from typing import Any

MATMUL_BLOCK = "matmul"
CHUNKS = (32, 16, 8, 4)  # output elements per chunk, the largest that divides the outputs


def matvec_schedule(mod: Any) -> Any:
    """The schedule for a tuning task holding a [1, K] x [K, N] matmul and element-wise blocks after
    it; None for any other task."""
    import tvm

    try:
        sch = tvm.s_tir.Schedule(mod)
        blocks = sch.get_child_blocks(sch.get_sblock("root"))
    except Exception:  # no root block, or more than one function
        return None
    names = [sch.get(b).name_hint for b in blocks]
    if not names or names[0] != MATMUL_BLOCK:
        return None
    matmul, epilogue = blocks[0], blocks[1:]
    loops = sch.get_loops(matmul)
    if len(loops) != 3 or int(sch.get(loops[0]).extent) != 1:
        return None
    batch, out, reduce = loops
    outputs = int(sch.get(out).extent)
    chunk = next((c for c in CHUNKS if outputs % c == 0), None)
    if chunk is None:
        return None
    try:
        for block in epilogue[:-1]:
            sch.compute_inline(block)
        chunk_outer, lanes = sch.split(out, [None, chunk])
        sch.reorder(batch, chunk_outer, reduce, lanes)
        parallel = sch.fuse(batch, chunk_outer)
        if epilogue:
            sch.reverse_compute_at(epilogue[-1], parallel)
            sch.vectorize(sch.get_loops(epilogue[-1])[-1])
        sch.vectorize(lanes)
        sch.parallel(parallel)
        sch.decompose_reduction(matmul, reduce)  # the zeroing loop comes out vectorised as well
    except tvm.s_tir.ScheduleError:
        return None
    return sch

"""nasc's design space for blocked convolutions: which tasks it takes, and every point of it computes
the same numbers as the unscheduled task, through MetaSchedule's own sampling and postprocessing; the
fixed (untuned) schedules of convolutions, matrix-vector products and data-movement kernels."""

from __future__ import annotations

import numpy as np
import pytest

from nasc.compiler.blocked_conv_space import blocked_conv_block, design_space, schedule_blocked_conv

TARGET = {"kind": "llvm", "mcpu": "haswell", "mtriple": "x86_64-linux-gnu", "num-cores": 2}


def _conv_task(*, depthwise: bool, padding: int, epilogue: bool, blocked_input: bool = True,
               out_chunks: int = 4, groups: int = 1, block: int = 8):
    """A tuning task as the blocked layout makes one: convolution (+ bias and ReLU when `epilogue`)."""
    import tvm
    from tvm import te, tirx

    from nasc.compiler.blocked_layout import conv2d_nchwc

    chunks, size = 2, 6  # small enough that any tile, fully unrolled, compiles in seconds
    data_shape = (1, chunks, size, size, block) if blocked_input else (1, 3, size, size)
    in_block = block if blocked_input else 3
    data = te.placeholder(data_shape, name="data")
    in_chunks = chunks if blocked_input else 1
    kernel_shape = (chunks, 3, 3, block) if depthwise else (out_chunks, in_chunks // groups, 3, 3, in_block, block)
    kernel = te.placeholder(kernel_shape, name="kernel")
    conv = conv2d_nchwc(data, kernel, strides=(1, 1), padding=(padding,) * 4, depthwise=depthwise, out_dtype="float32",
                        groups=groups)
    tensors = [data, kernel]
    if epilogue:
        bias = te.placeholder((1, int(conv.shape[1]), 1, 1, block), name="bias")
        added = te.compute(conv.shape, lambda n, c, y, x, b: conv[n, c, y, x, b] + bias[0, c, 0, 0, b], name="T_add")
        out = te.compute(conv.shape, lambda *i: tirx.max(added(*i), tirx.const(0.0, "float32")), name="compute")
        tensors += [bias, out]
    else:
        tensors.append(conv)
    return tvm.IRModule({"main": te.create_prim_func(tensors)})


def _run(mod, seed: int = 0) -> np.ndarray:
    import tvm
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    rng = np.random.default_rng(seed)
    args = [tvm.runtime.tensor(rng.standard_normal([int(d) for d in info.as_json()[2]]).astype("float32"))
            for info in ArgInfo.from_entry_func(mod, remove_preproc=True)]
    tvm.compile(mod, target=tvm.target.Target(TARGET))(*args)
    return args[-1].numpy()


CASES = [
    pytest.param(dict(depthwise=False, padding=1, epilogue=True), id="dense-padded-epilogue"),
    pytest.param(dict(depthwise=False, padding=0, epilogue=False), id="dense-no-epilogue"),
    pytest.param(dict(depthwise=True, padding=1, epilogue=True), id="depthwise-padded-epilogue"),
    pytest.param(dict(depthwise=False, padding=1, epilogue=True, blocked_input=False), id="stem-nchw-input"),
    pytest.param(dict(depthwise=False, padding=1, epilogue=True, groups=2), id="grouped-padded-epilogue"),
]


@pytest.mark.parametrize("case", CASES)
def test_blocked_conv_tasks_are_recognised(case: dict) -> None:
    expected = "depthwise_conv2d_nchwc" if case["depthwise"] else "conv2d_nchwc"
    assert blocked_conv_block(_conv_task(**case)) == expected


def test_other_tasks_keep_the_generic_space() -> None:
    import tvm
    from tvm import te

    a = te.placeholder((4, 8), name="a")
    b = te.compute((4, 8), lambda i, j: a[i, j] * 2.0, name="double")
    mod = tvm.IRModule({"main": te.create_prim_func([a, b])})
    assert blocked_conv_block(mod) is None
    assert design_space(mod) == "post-order-apply"


@pytest.mark.parametrize("case", CASES)
def test_sampled_schedules_compute_the_same_numbers(case: dict) -> None:
    """Several points of the space, drawn and postprocessed by MetaSchedule as tuning does."""
    import tvm
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.schedule import Trace

    from nasc.compiler.tensor_intrinsics import import_tensor_intrinsics

    import_tensor_intrinsics()  # a tuning context imports them; the slow way takes a minute under pytest
    mod = _conv_task(**case)
    want = _run(mod)
    context = ms.TuneContext(mod=mod, target=tvm.target.Target(TARGET), space_generator=design_space(mod),
                             search_strategy="replay-trace", rand_state=7)
    (space,) = context.generate_design_space()
    postprocs = context.space_generator.postprocs
    seen: set[str] = set()
    for seed in range(1, 7):
        sch = tvm.s_tir.Schedule(mod, seed=seed)
        Trace(space.trace.insts, {}).apply_to_schedule(sch, remove_postproc=True)  # no decisions: fresh samples
        assert all(p.apply(sch) for p in postprocs), "a postprocessor refused a point of the space"
        seen.add(str(sch.trace.decisions))
        np.testing.assert_allclose(_run(sch.mod), want, rtol=1e-5, atol=1e-4)
    assert len(seen) > 1, "the space's sizes were not sampled"


def test_register_tile_is_vectorised_over_the_channel_block() -> None:
    import tvm
    from tvm.tirx import ForKind

    mod = _conv_task(depthwise=False, padding=1, epilogue=True)
    sch = tvm.s_tir.Schedule(mod, seed=3)
    schedule_blocked_conv(sch, "conv2d_nchwc")
    script = sch.mod.script()
    assert "T.parallel" in script and "T.vectorized(8)" in script
    conv_loops = sch.get_loops(sch.get_sblock("conv2d_nchwc"))
    kinds = [sch.get(loop).kind for loop in conv_loops]
    assert kinds[0] == ForKind.PARALLEL and kinds[-1] == ForKind.VECTORIZED, kinds
    assert kinds[-4:-1] == [ForKind.UNROLLED] * 3, kinds  # the register tile: channel blocks, rows, columns


def test_a_convolution_with_an_epilogue_the_space_cannot_take_keeps_the_generic_space() -> None:
    """A reduction after the convolution (not element-wise over its output): the dry run refuses it."""
    import tvm
    from tvm import te

    from nasc.compiler.blocked_layout import conv2d_nchwc

    data = te.placeholder((1, 2, 6, 6, 8), name="data")
    kernel = te.placeholder((2, 2, 1, 1, 8, 8), name="kernel")
    conv = conv2d_nchwc(data, kernel, strides=(1, 1), padding=(0, 0, 0, 0), depthwise=False, out_dtype="float32")
    k = te.reduce_axis((0, 6), name="k")
    rowsum = te.compute((1, 2, 6, 8), lambda n, c, y, b: te.sum(conv[n, c, y, k, b], axis=k), name="rowsum")
    mod = tvm.IRModule({"main": te.create_prim_func([data, kernel, rowsum])})
    assert blocked_conv_block(mod) is None
    assert design_space(mod) == "post-order-apply"


def test_column_tiles_that_do_not_divide_the_width_compute_the_same_numbers() -> None:
    """A row of 6 columns in tiles of 4 (a full tile and a short one) and of 5."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from nasc.compiler.tensor_intrinsics import import_tensor_intrinsics

    import_tensor_intrinsics()
    mod = _conv_task(depthwise=False, padding=1, epilogue=True)
    want = _run(mod)
    context = ms.TuneContext(mod=mod, target=tvm.target.Target(TARGET), space_generator=design_space(mod),
                             search_strategy="replay-trace", rand_state=7)
    (space,) = context.generate_design_space()
    columns = next(inst for inst in space.trace.insts if inst.kind.name == "SampleCategorical")
    assert [int(c) for c in columns.attrs[0]] == [1, 2, 3, 4, 5, 6]
    for index in (3, 4):  # 4 and 5 columns
        sch = tvm.s_tir.Schedule(mod)
        space.trace.with_decision(columns, index, remove_postproc=True).apply_to_schedule(sch, remove_postproc=True)
        assert all(p.apply(sch) for p in context.space_generator.postprocs)
        np.testing.assert_allclose(_run(sch.mod), want, rtol=1e-5, atol=1e-4)


def test_channel_blocks_that_divide_only_by_powers_of_five_get_tiles_of_five() -> None:
    """A 1000-class classifier has 125 blocks of 8 channels (here 25: also 5 x 5); with a budget of 4
    blocks per tile its only tile would be one block."""
    import tvm

    mod = _conv_task(depthwise=False, padding=0, epilogue=False, out_chunks=25)
    tiles = set()
    for seed in range(1, 21):
        sch = tvm.s_tir.Schedule(mod, seed=seed)
        schedule_blocked_conv(sch, "conv2d_nchwc")
        channel_tile = next(inst for inst in sch.trace.insts if inst.kind.name == "SamplePerfectTile")
        tiles.add(int(sch.trace.decisions[channel_tile][1]))
    assert tiles == {1, 5}, tiles


@pytest.mark.parametrize("case", CASES)
def test_the_fixed_schedule_computes_the_same_numbers_with_no_sampling(case: dict) -> None:
    """The untuned schedule of a blocked convolution: the space's structure with default_tile's sizes,
    a trace with no sampled decision (so a record of it replays exactly)."""
    from nasc.compiler.default_schedule import fixed_schedule

    mod = _conv_task(**case)
    sch = fixed_schedule(mod)
    assert sch is not None
    assert not any(inst.kind.name.startswith("Sample") for inst in sch.trace.insts)
    assert "T.parallel" in sch.mod.script() and "T.vectorized(8)" in sch.mod.script()
    np.testing.assert_allclose(_run(sch.mod), _run(mod), rtol=1e-5, atol=1e-4)


def test_the_avx512_fixed_tile_computes_the_same_numbers() -> None:
    """16-lane blocks (as AVX-512 blocks them) take default_tile's columns-first tile: 2 blocks x 6 columns."""
    from nasc.compiler.default_schedule import fixed_schedule

    mod = _conv_task(depthwise=False, padding=1, epilogue=True, block=16)
    sch = fixed_schedule(mod)
    assert sch is not None and "T.vectorized(16)" in sch.mod.script()
    np.testing.assert_allclose(_run(sch.mod), _run(mod), rtol=1e-5, atol=1e-4)


def test_default_tile_keeps_accumulators_within_the_vector_registers() -> None:
    from nasc.compiler.blocked_conv_space import default_tile

    dense = default_tile(32, 6, 8, depthwise=False)  # AVX2: 16 registers, 8 accumulators
    assert (dense.channel_blocks, dense.rows, dense.columns) == (4, 1, 2)
    assert default_tile(25, 13, 8, depthwise=False).channel_blocks == 1  # no block count of 4 or 2 divides
    depthwise = default_tile(12, 24, 8, depthwise=True)
    assert (depthwise.channel_blocks, depthwise.columns) == (1, 8)
    wide = default_tile(32, 24, 16, depthwise=False)  # AVX-512: columns first, then blocks, 12 accumulators
    assert (wide.channel_blocks, wide.columns) == (2, 6)
    late_wide = default_tile(32, 7, 16, depthwise=False)  # 2 tiles of 4 columns, 2 blocks
    assert (late_wide.channel_blocks, late_wide.columns) == (2, 4)
    narrow = default_tile(32, 3, 16, depthwise=False)  # 3 columns leave room for 4 blocks
    assert (narrow.channel_blocks, narrow.columns) == (4, 3)
    assert default_tile(3, 56, 16, depthwise=False).channel_blocks == 1  # no block count of 4 or 2 divides
    assert default_tile(12, 24, 16, depthwise=True).columns == 12  # depthwise: columns only, up to 16
    assert default_tile(8, 1, 8, depthwise=False).columns == 1  # a 1x1 map (squeeze-excitation)
    odd = default_tile(2, 7, 8, depthwise=False)  # 2 blocks; of 2-4 columns, 4 and 2 waste one at the row's end
    assert (odd.channel_blocks, odd.columns) == (2, 4)
    assert default_tile(1, 13, 8, depthwise=False).columns == 7  # 13 = 7 + 6 wastes one; 8 would waste three
    late = default_tile(64, 7, 8, depthwise=False)  # a 7-wide map: 4 tiles of 2 (one column cut), not 7 of 1
    assert (late.channel_blocks, late.columns) == (4, 2)
    assert default_tile(64, 3, 8, depthwise=False).columns == 2  # 2 tiles, not 3


def test_a_classifier_matvec_gets_a_parallel_vectorised_schedule_with_the_same_numbers() -> None:
    """[1, K] x [K, N] + bias, as a Linear layer lowers: without a schedule it is one serial scalar loop."""
    import tvm
    from tvm import te, topi

    from nasc.compiler.default_schedule import fixed_schedule

    x = te.placeholder((1, 96), name="x")
    weight = te.placeholder((96, 40), name="weight")
    bias = te.placeholder((40,), name="bias")
    k = te.reduce_axis((0, 96), name="k")
    product = te.compute((1, 40), lambda i, j: te.sum(x[i, k] * weight[k, j], axis=k), name="matmul")
    out = topi.nn.relu(topi.add(product, bias))
    mod = tvm.IRModule({"main": te.create_prim_func([x, weight, bias, out])})
    sch = fixed_schedule(mod)
    assert sch is not None
    script = sch.mod.script()
    assert "T.parallel" in script and "T.vectorized(8)" in script  # 40 outputs: chunks of 8
    np.testing.assert_allclose(_run(sch.mod), _run(mod), rtol=1e-5, atol=1e-5)
    wide = te.placeholder((2, 96), name="x2")  # batch 2: not a matvec, left to TVM
    product2 = te.compute((2, 40), lambda i, j: te.sum(wide[i, k] * weight[k, j], axis=k), name="matmul")
    assert fixed_schedule(tvm.IRModule({"main": te.create_prim_func([wide, weight, product2])})) is None


def test_data_movement_kernels_run_vectorised_and_only_big_ones_in_parallel() -> None:
    import tvm
    from tvm import te

    from nasc.compiler.default_schedule import fixed_schedule
    from nasc.compiler.injective_schedule import PARALLEL_MIN_ELEMENTS

    def transpose_task(chunks: int, size: int):
        data = te.placeholder((1, size, size, chunks * 8), name="data")
        doubled = te.compute(data.shape, lambda *i: data(*i) * 2.0, name="double")
        out = te.compute((1, chunks, size, size, 8), lambda n, c, y, x, b: doubled[n, y, x, c * 8 + b], name="blocked")
        return tvm.IRModule({"main": te.create_prim_func([data, out])})

    big, small = transpose_task(8, 16), transpose_task(2, 4)
    assert 8 * 16 * 16 * 8 >= PARALLEL_MIN_ELEMENTS > 2 * 4 * 4 * 8
    for mod, parallel in ((big, True), (small, False)):
        sch = fixed_schedule(mod)
        assert sch is not None
        script = sch.mod.script()
        assert "T.vectorized(8)" in script and ("T.parallel" in script) == parallel
        np.testing.assert_allclose(_run(sch.mod), _run(mod))
    a = te.placeholder((4, 8), name="a")
    k = te.reduce_axis((0, 8), name="k")
    total = te.compute((4,), lambda i: te.sum(a[i, k], axis=k), name="total")
    assert fixed_schedule(tvm.IRModule({"main": te.create_prim_func([a, total])})) is None  # a reduction


def test_blocked_pools_and_spatial_means_reduce_whole_vectors() -> None:
    import tvm
    from tvm import te, topi

    from nasc.compiler.default_schedule import fixed_schedule

    data = te.placeholder((1, 4, 14, 14, 8), name="data")
    pooled = topi.nn.pool2d(data, kernel=(3, 3), stride=(2, 2), dilation=(1, 1), padding=(1, 1, 1, 1),
                            pool_type="max", layout="NCHW8c")
    mean = topi.divide(topi.sum(data, axis=[2, 3], keepdims=True), 196.0)  # as Relax legalizes mean
    for out in (pooled, mean):
        mod = tvm.IRModule({"main": te.create_prim_func([data, out])})
        sch = fixed_schedule(mod)
        assert sch is not None
        assert "T.vectorized(8)" in sch.mod.script()
        np.testing.assert_allclose(_run(sch.mod), _run(mod), rtol=1e-5, atol=1e-6)
    a = te.placeholder((4, 6), name="a")
    k = te.reduce_axis((0, 4), name="k")
    columns = te.compute((6,), lambda j: te.sum(a[k, j], axis=k), name="columns")  # one spatial axis: not a lane map
    assert fixed_schedule(tvm.IRModule({"main": te.create_prim_func([a, columns])})) is None

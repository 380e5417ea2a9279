"""A design space of nasc's own for the channel-blocked convolutions (blocked_layout.py).

MetaSchedule's generic CPU space tiles each of a convolution's nine loops at several levels with
sampled sizes: most random draws from it are slow, so a small budget finds a fast schedule by luck.
This space keeps the structure CPU convolution kernels share (onnxruntime's NCHWc kernels and TVM's
old x86 templates) and samples only its sizes:

- the output is computed one register tile at a time: `oc_i` channel blocks x `y_i` rows x `x_i`
  columns, each point one vector of the channel block; the whole reduction (input channels, kernel
  rows and columns) runs inside the tile, so its accumulators stay in registers, and the fused
  epilogue (bias, activation, residual add) is applied to the tile before it is stored;
- the tiles' outer loops over channel blocks and rows run in parallel; the channel block is the
  vectorised axis;
- a padded input is computed first, in parallel;
- how far the reduction's loops are unrolled is sampled as MetaSchedule's own rule samples it.

The channel-block and row tiles are perfect tiles, which MetaSchedule's evolutionary search mutates as
it does its own; the column tile is any count up to the budget, the last tile of a row shorter: a
row of 13 columns allows only 1 or 13 as a perfect tile, which left layers on 13x13 maps (such as
squeezenet's late 3x3 expands and its classifier) a space of a few dozen candidates at most, and
their best schedules need a column tile in between.

A short last tile leaves a predicate on each multiply-add of the tile (TVM's loop partitioning does
not take it out: the split's predicate is not marked `likely`). Unrolling the loop over a row's tiles
folds it away, but for the tiles tuning picks the copies of the reduction cost more than the
predicate (unrolled rows measured slower), so rows are not unrolled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CONV_BLOCKS = ("conv2d_nchwc", "depthwise_conv2d_nchwc")
PAD_BLOCK = "pad_nchwc"
UNROLL_STEPS = (0, 16, 64, 512)
DEFAULT_UNROLL = 64  # the unroll depth of the untuned schedule
WIDE_COLUMNS = 6  # the untuned tile's most columns with AVX-512 (default_tile)
WIDE_ACCUMULATORS = 12  # and its most accumulators there


@dataclass(frozen=True)
class RegisterBudget:
    """The most a register tile may hold along each of its axes (the tile's sampled sizes stay at or under them)."""

    channel_blocks: int = 5  # not 4: a 1000-class classifier has 125 blocks of 8, divisible by powers of 5 only
    rows: int = 4
    columns: int = 16


def blocked_conv_block(mod: Any) -> str | None:
    """The name of the blocked convolution block in a tuning task (an IRModule with one PrimFunc),
    if it is one this space schedules: a convolution, an optional padding before it, and element-wise
    blocks after it only (None for any other task)."""
    import tvm

    conv = _conv_block_name(mod)
    if conv is None:
        return None
    try:  # a dry run: an epilogue that is not element-wise over the output fails here, not in tuning
        schedule_blocked_conv(tvm.s_tir.Schedule(mod), conv)
    except Exception:
        return None
    return conv


def _conv_block_name(mod: Any) -> str | None:
    """The convolution block's name when the task's blocks are an optional padding, one blocked
    convolution and blocks after it (whether those are element-wise only a schedule can tell)."""
    import tvm

    try:
        sch = tvm.s_tir.Schedule(mod)
        names = [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]
    except Exception:  # no root block, or more than one function: not a task this space knows
        return None
    convs = [n for n in names if n in CONV_BLOCKS]
    if len(convs) != 1 or names[:names.index(convs[0])] not in ([], [PAD_BLOCK]):
        return None
    return convs[0]


def schedule_blocked_conv(sch: Any, conv_name: str, budget: RegisterBudget = RegisterBudget(),
                          *, fixed: bool = False) -> None:
    """Apply the space's structure to `sch` (a tuning task holding one blocked convolution), with
    sampled tile sizes and unroll depth, or with `fixed` ones (:func:`default_tile`): the schedule a
    convolution gets before, or without, tuning."""
    root = sch.get_sblock("root")
    blocks = sch.get_child_blocks(root)
    names = [sch.get(b).name_hint for b in blocks]
    conv = blocks[names.index(conv_name)]
    epilogue = blocks[names.index(conv_name) + 1:]
    for block in epilogue[:-1]:
        sch.compute_inline(block)
    out = epilogue[-1] if epilogue else sch.cache_write(conv, 0, "global")

    n, oc, y, x, lane = sch.get_loops(out)
    if fixed:
        tile = default_tile(int(sch.get(oc).extent), int(sch.get(x).extent), int(sch.get(lane).extent),
                            depthwise=conv_name.startswith("depthwise"))
        oc_o, oc_i = sch.split(oc, [None, tile.channel_blocks])
        y_o, y_i = sch.split(y, [None, tile.rows])
        x_o, x_i = sch.split(x, [None, tile.columns])
    else:
        oc_o, oc_i = sch.split(oc, sch.sample_perfect_tile(oc, n=2, max_innermost_factor=budget.channel_blocks))
        y_o, y_i = sch.split(y, sch.sample_perfect_tile(y, n=2, max_innermost_factor=budget.rows))
        # Any column count up to the budget, the row's last tile shorter where it does not divide the width.
        columns = range(1, min(int(sch.get(x).extent), budget.columns) + 1)
        x_o, x_i = sch.split(x, [None, _sample_uniform(sch, columns)])
    sch.reorder(oc_o, y_o, x_o, oc_i, y_i, x_i, lane)
    sch.parallel(sch.fuse(n, oc_o, y_o))
    sch.compute_at(conv, x_o, preserve_unit_loops=True)
    for loop in (oc_i, y_i, x_i):
        sch.unroll(loop)
    sch.vectorize(lane)

    loops = sch.get_loops(conv)
    reductions = 2 if conv_name.startswith("depthwise") else 4
    tile = loops[-4 - reductions:-reductions]  # oc_i, y_i, x_i, lane under x_o
    sch.reorder(*loops[-reductions:], *tile)
    for loop in tile[:-1]:
        sch.unroll(loop)
    sch.vectorize(tile[-1])

    if PAD_BLOCK in names:
        pad = blocks[names.index(PAD_BLOCK)]
        p_n, p_c, p_y, _, p_lane = sch.get_loops(pad)
        sch.parallel(sch.fuse(p_n, p_c, p_y))
        sch.vectorize(p_lane)

    sch.annotate(root, "meta_schedule.unroll_explicit", DEFAULT_UNROLL if fixed else _sample_uniform(sch, UNROLL_STEPS))


def default_tile(channel_blocks: int, width: int, lanes: int, *, depthwise: bool) -> RegisterBudget:
    """The register tile a convolution gets untuned. Each weight vector a tile loads serves its
    columns; each input value it broadcasts serves its channel blocks.

    With 16 vector registers (AVX2, SSE, and NEON, whose lanes do not tell it from SSE): 8
    accumulators, up to four channel blocks for a dense convolution, then columns. Measured on 3x3
    layers of ResNet-18 with AVX2, 4x2 or 2x4 ran up to twice as fast as 2x6.

    With AVX-512 (32 registers, 16 lanes: a weight vector is 64 bytes) columns come first, up to
    WIDE_COLUMNS, then as many channel blocks as keep the tile at WIDE_ACCUMULATORS: on wide maps
    with many input channels the weights stream from L2, and each loaded weight vector must serve
    several columns. Measured on Zen 4 over the dense convolutions of ResNet-18/50, Inception,
    MobileNetV2 and EfficientNet-B0 at 224x224, 2x6 (2x4 and 2x5 on 7- and 14-wide maps) ran their
    sum 1.3-1.6x faster than 4x4; at 96x96 (maps 3 to 24 wide) within 4 % on ResNet-18/50 and
    Inception, 14 % slower on ShuffleNetV2 (bench/fixed_tiles.py). A 3-wide map still gets 4x3.

    A depthwise convolution's channel blocks share no input: columns only. The columns are the count
    that covers a row in the fewest tiles, the least wasted at the row's end among those: a tile costs
    about the same with a column cut off, so on a 7-wide map 4 tiles of 2 beat 7 of 1 (half the
    accumulators: 1.7x slower on ResNet-50's last 1x1 and 3x3 layers with AVX2)."""
    accumulators = 16 if lanes >= 16 else 8
    if depthwise:
        return RegisterBudget(channel_blocks=1, rows=1, columns=row_tile_columns(width, accumulators))
    if lanes >= 16:
        return columns_first_tile(channel_blocks, width, WIDE_COLUMNS, WIDE_ACCUMULATORS)
    return blocks_first_tile(channel_blocks, width, accumulators)


def blocks_first_tile(channel_blocks: int, width: int, accumulators: int) -> RegisterBudget:
    """Up to 4 channel blocks (a count that divides `channel_blocks`), then columns up to `accumulators`."""
    blocks = next(b for b in (4, 2, 1) if channel_blocks % b == 0)
    return RegisterBudget(channel_blocks=blocks, rows=1, columns=row_tile_columns(width, accumulators // blocks))


def columns_first_tile(channel_blocks: int, width: int, columns: int, accumulators: int) -> RegisterBudget:
    """Up to `columns` columns, then channel blocks while the tile holds at most `accumulators`."""
    cols = row_tile_columns(width, columns)
    blocks = next((b for b in (4, 2) if channel_blocks % b == 0 and b * cols <= accumulators), 1)
    return RegisterBudget(channel_blocks=blocks, rows=1, columns=cols)


def row_tile_columns(width: int, cap: int) -> int:
    """Columns per tile, at most `cap`, that cover a row of `width` in the fewest tiles, the least
    wasted at the row's end among those."""
    cap = max(1, min(width, cap))
    return min(range(1, cap + 1), key=lambda c: (-(-width // c), -(-width // c) * c - width))


def fixed_conv_schedule(mod: Any) -> Any:
    """The untuned schedule of a tuning task holding a blocked convolution (:func:`default_tile`);
    None for any other task."""
    import tvm

    conv = _conv_block_name(mod)
    if conv is None:
        return None
    sch = tvm.s_tir.Schedule(mod)
    try:  # scheduled once: an epilogue that is not element-wise fails here, as in blocked_conv_block's dry run
        schedule_blocked_conv(sch, conv, fixed=True)
    except Exception:
        return None
    return sch


def _sample_uniform(sch: Any, candidates: Sequence[int]) -> Any:
    """One of `candidates`, each as likely, as a sampled (replayable) value of `sch`."""
    return sch.sample_categorical(candidates=list(candidates), probs=[1 / len(candidates)] * len(candidates))


def design_space(mod: Any) -> Any:
    """The design space generator for a tuning task: this space for a blocked convolution, MetaSchedule's
    generic one ("post-order-apply") for everything else."""
    from tvm.s_tir import meta_schedule as ms

    conv = blocked_conv_block(mod)
    if conv is None:
        return "post-order-apply"

    def apply(sch: Any) -> None:
        schedule_blocked_conv(sch, conv)

    return ms.space_generator.ScheduleFn(apply)

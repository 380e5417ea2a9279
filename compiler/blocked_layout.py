"""Channel-blocked (NCHWc) layout for a whole network on CPU targets.

In NCHW a convolution's innermost loop runs along the output width: strided convolutions read every
second column, depthwise convolutions on small maps have short rows, and a dense convolution's weights
are not contiguous in output channels. In NCHWc the channels are split into blocks of one vector's
width (`[n, C/c, h, w, c]`), so every convolution vectorises over the channel block: the layout
onnxruntime's CPU kernels use. Converting one layer at a time costs a transpose on each side, which
eats the gain, so this pass converts the network: a convolution's output stays
blocked, and element-wise operators, channel concatenation, pooling and spatial means run on the
blocked tensor. Only where an operator needs NCHW is the tensor turned back (the NCHW twin of every
converted value is emitted and dead-code elimination removes the ones nothing reads).

Converted: NCHW / OIHW conv2d without dilation, dense (groups 1), grouped (whole blocks per group) or
depthwise, with constant weights
(and dropout, an identity at inference, passes the blocked tensor through);
the block is the target's vector width in floats (16 with AVX-512, 8 with AVX2, 4 with NEON). A channel count that
is not a multiple of it is padded up to one with zero weights, as onnxruntime's kernels do, when that
wastes at most a third (1000 classes -> 1008, 24 -> 32); otherwise it takes the largest smaller block
that divides it. Padded lanes hold finite values that every consumer ignores: convolutions read them
with zero weights, and the NCHW twin slices them off. A convolution whose input channels are fewer
than a block (a network's stem) reads its NCHW input directly. Everything else keeps NCHW and TVM's
own lowering.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from .channel_gather import ChannelMap, gather_channels_nchwc, shuffle_order, slice_order
from .strided_conv import conv_out_dtype, static_ints

# The layout's name in the latency table's version key (devices/latency_table.py).
# "-isa": the block follows the CPU's vector ISA; "-gather": channel concat, shuffle and slice and
# per-channel broadcasts stay blocked (channel_gather.py).
LAYOUT = "NCHWc-padded-isa-gather"
# Channels are padded up to a whole number of full blocks when that adds at most this fraction.
MAX_PADDING = 1 / 3
_ELEMENTWISE = frozenset({
    "relax.add", "relax.subtract", "relax.multiply", "relax.divide", "relax.maximum", "relax.minimum",
    "relax.nn.relu", "relax.clip", "relax.sigmoid", "relax.tanh", "relax.nn.silu", "relax.nn.leakyrelu",
})
_POOLS = frozenset({"relax.nn.max_pool2d", "relax.nn.avg_pool2d"})
_CLIP_HALF = re.compile(r"^(maximum|minimum)\d*$")
# The widest vector ISA a CPU target has, by LLVM feature name, and its register width in bits.
_VECTOR_BITS = (("avx512f", 512), ("avx", 256), ("sve", 128), ("neon", 128), ("sse2", 128))


def channel_block(target: Any) -> int:
    """Floats per vector register of an LLVM CPU target (the channel block); 0 where the pass is off.

    Read from the target's CPU features: TVM's `llvm_get_vector_width` says 512 bits for every x86
    CPU, AVX2-only ones (haswell, znver3) included, which made the block 16 floats, two registers,
    where onnxruntime's kernels use 8.
    """
    from tvm.target import codegen

    if target.kind.name != "llvm":
        return 0
    features = {str(f) for f in codegen.llvm_get_cpu_features(target)}
    for feature, bits in _VECTOR_BITS:
        if feature in features:
            return bits // 32
    lanes = int(codegen.llvm_get_vector_width(target)) // 32
    return lanes if lanes >= 4 else 0


def block_for(channels: int, block: int) -> int:
    """The largest block (the vector width, halved down to 4) that divides `channels`; 0 if none does."""
    size = block
    while size >= 4:
        if channels % size == 0:
            return size
        size //= 2
    return 0


def choose_block(channels: int, block: int, positions: int | None = None) -> int:
    """The block for a tensor of `channels`: the full vector width when padding up to a multiple of it
    adds at most MAX_PADDING, else the largest smaller block that divides `channels` (0 if none).

    A tensor of one spatial position (`positions` 1: a squeeze-excitation's reduced channels) always
    takes the full width: its padding costs a few lanes, where NCHW would cost two layout changes.
    """
    if positions == 1 or padded_channels(channels, block) <= channels * (1 + MAX_PADDING):
        return block
    return block_for(channels, block)


def padded_channels(channels: int, block: int) -> int:
    """`channels` rounded up to a multiple of `block`."""
    return -(-channels // block) * block


def _pad_axis(value: np.ndarray, axis: int, size: int, fill: float = 0.0) -> np.ndarray:
    """`value` extended along `axis` to `size` with `fill`."""
    extra = size - value.shape[axis]
    if extra == 0:
        return value
    widths = [(0, 0)] * value.ndim
    widths[axis] = (0, extra)
    return np.pad(value, widths, constant_values=fill)


def _carries_padding(blocked: Any, size: int, channels: int) -> bool:
    """True when the blocked tensor `blocked` (block `size`) holds more than `channels` channels."""
    return _shape(blocked)[1] * size != channels


def _broadcasts_per_channel(arg_shape: tuple[int, ...] | None, out_shape: tuple[int, ...]) -> bool:
    """True when a 4-d `arg_shape` has the output's channels and broadcasts along the rest (a
    squeeze-excitation's [1, C, 1, 1] scale of a [1, C, H, W] tensor)."""
    if arg_shape is None or len(arg_shape) != 4 or arg_shape[1] != out_shape[1]:
        return False
    return all(a in (1, o) for a, o in zip(arg_shape, out_shape, strict=True))


def _tuple_ints(expr: Any) -> tuple[int, ...] | None:
    """The integers of a Relax tuple of constants (a strided slice's axes, begins, ...), or None."""
    from tvm import relax

    if not isinstance(expr, relax.Tuple):
        return None
    try:
        return tuple(int(getattr(f, "value", f)) for f in expr.fields)
    except (TypeError, ValueError):
        return None


def _shape(expr: Any) -> tuple[int, ...] | None:
    shape = getattr(getattr(expr, "ty", None), "shape", None)
    return static_ints(shape) if shape is not None else None


def to_blocked(n: Any, c: Any, h: Any, w: Any, *, block: int) -> tuple[Any, ...]:
    """Index map NCHW -> NCHW{block}c."""
    return n, c // block, h, w, c % block


def conv2d_nchwc(data: Any, kernel: Any, *, strides: tuple[int, int], padding: tuple[int, int, int, int],
                 depthwise: bool, out_dtype: str, groups: int = 1) -> Any:
    """TE: convolution of blocked (or, for a stem, NCHW) `data` into NCHW{c}c.

    `kernel` is `[O/co, C/ci, kh, kw, ci, co]` for a dense convolution, `[O/co, (C/g)/ci, kh, kw, ci,
    co]` for one of `groups` groups (blocks within a group: co divides O/g, ci divides C/g), `[C/c,
    kh, kw, c]` for a depthwise one (see :func:`block_dense_kernel`, :func:`block_depthwise_kernel`).
    A grouped convolution is the dense one whose output chunk reads only its group's input chunks.
    """
    from tvm import te, tirx

    blocked_input = len(data.shape) == 5
    if blocked_input:
        _, in_chunks, height, width, in_block = (int(d) for d in data.shape)
    else:
        _, in_block, height, width = (int(d) for d in data.shape)
        in_chunks = 1
    n_batch = int(data.shape[0])
    if depthwise:
        out_chunks, k_h, k_w, out_block = (int(d) for d in kernel.shape)
    else:
        out_chunks, _, k_h, k_w, _, out_block = (int(d) for d in kernel.shape)
    s_h, s_w = strides
    pad_top, pad_left, pad_bottom, pad_right = padding
    out_h = (height + pad_top + pad_bottom - k_h) // s_h + 1
    out_w = (width + pad_left + pad_right - k_w) // s_w + 1
    zero = tirx.const(0, data.dtype)

    def read(n, chunk, y, x, lane):
        return data[n, chunk, y, x, lane] if blocked_input else data[n, chunk * in_block + lane, y, x]

    if any(padding):
        def padded_value(n, chunk, y, x, lane):
            yy, xx = y - pad_top, x - pad_left
            inside = tirx.all(yy >= 0, yy < height, xx >= 0, xx < width)
            return tirx.if_then_else(inside, read(n, chunk, yy, xx, lane), zero)

        padded = te.compute((n_batch, in_chunks, height + pad_top + pad_bottom, width + pad_left + pad_right,
                             in_block), padded_value, name="pad_nchwc")

        def source(n, chunk, y, x, lane):
            return padded[n, chunk, y, x, lane]
    else:
        source = read

    ry = te.reduce_axis((0, k_h), name="ry")
    rx = te.reduce_axis((0, k_w), name="rx")
    if depthwise:
        def depthwise_conv(n, oc, y, x, lane):
            value = source(n, oc, y * s_h + ry, x * s_w + rx, lane).astype(out_dtype)
            return te.sum(value * kernel[oc, ry, rx, lane].astype(out_dtype), axis=[ry, rx])

        return te.compute((n_batch, out_chunks, out_h, out_w, out_block), depthwise_conv,
                          name="depthwise_conv2d_nchwc")
    group_chunks = int(kernel.shape[1])  # input chunks each output chunk reads (all of them when dense)
    rc_outer = te.reduce_axis((0, group_chunks), name="rc_outer")
    rc_inner = te.reduce_axis((0, in_block), name="rc_inner")
    out_chunks_per_group = out_chunks // groups

    def dense_conv(n, oc, y, x, lane):
        chunk = rc_outer if groups == 1 else (oc // out_chunks_per_group) * group_chunks + rc_outer
        value = source(n, chunk, y * s_h + ry, x * s_w + rx, rc_inner).astype(out_dtype)
        weight = kernel[oc, rc_outer, ry, rx, rc_inner, lane].astype(out_dtype)
        return te.sum(value * weight, axis=[rc_outer, ry, rx, rc_inner])

    return te.compute((n_batch, out_chunks, out_h, out_w, out_block), dense_conv, name="conv2d_nchwc")


def block_dense_kernel(weight: np.ndarray, in_block: int, out_block: int) -> np.ndarray:
    """OIHW -> [O/co, C/ci, kh, kw, ci, co], with zero weights for padded input and output channels."""
    weight = _pad_axis(weight, 0, padded_channels(weight.shape[0], out_block))
    weight = _pad_axis(weight, 1, padded_channels(weight.shape[1], in_block))
    out_c, in_c, k_h, k_w = weight.shape
    split = weight.reshape(out_c // out_block, out_block, in_c // in_block, in_block, k_h, k_w)
    return np.ascontiguousarray(split.transpose(0, 2, 4, 5, 3, 1))


def block_depthwise_kernel(weight: np.ndarray, block: int) -> np.ndarray:
    """[C, 1, kh, kw] -> [C/c, kh, kw, c], with zero weights for padded channels."""
    weight = _pad_axis(weight, 0, padded_channels(weight.shape[0], block))
    channels, _, k_h, k_w = weight.shape
    return np.ascontiguousarray(weight.reshape(channels // block, block, k_h, k_w).transpose(0, 2, 3, 1))


def block_channel_constant(value: np.ndarray, channels: int, block: int, fill: float = 0.0) -> np.ndarray | None:
    """A constant that broadcasts against an NCHW tensor, as one that broadcasts against its NCHW{c}c
    form (padded channels get `fill`); None when it varies along more than channels (or is not
    broadcastable)."""
    if value.size == 1:
        return value.reshape(()) if value.ndim <= 4 else None
    if value.ndim > 4:
        return None
    full = value.reshape((1,) * (4 - value.ndim) + value.shape)
    if full.shape != (1, channels, 1, 1):
        return None
    full = _pad_axis(full, 1, padded_channels(channels, block), fill)
    return np.ascontiguousarray(full.reshape(1, -1, block, 1, 1).transpose(0, 1, 3, 4, 2))


def clip_calls_to_relax(mod: Any) -> Any:
    """Turn the importer's Clip halves (`call_tir` of TOPI maximum/minimum with a 0-d bound) back into
    Relax `maximum` / `minimum`, so layout passes see them as element-wise operators."""
    import tvm
    from tvm import relax, te, tirx, topi
    from tvm.relax.expr_functor import PyExprMutator, mutator
    from tvm_ffi import structural_equal

    call_tir = tvm.ir.Op.get("relax.call_tir")

    @mutator
    class _ClipRewriter(PyExprMutator):
        def visit_call_(self, call: Any) -> Any:
            call = super().visit_call_(call)
            if not call.op.same_as(call_tir) or not isinstance(call.args[0], tvm.ir.GlobalVar):
                return call
            match = _CLIP_HALF.match(call.args[0].name_hint)
            args = list(call.args[1].fields) if isinstance(call.args[1], relax.Tuple) else []
            shapes = [_shape(a) for a in args]
            if match is None or len(args) != 2 or None in shapes or shapes[1] != ():
                return call
            dtype = args[0].ty.dtype
            placeholders = [te.placeholder([tirx.IntImm("int64", d) for d in s], dtype, name=f"x{i}")
                            for i, s in enumerate(shapes)]
            topi_op = topi.maximum if match.group(1) == "maximum" else topi.minimum
            expected = te.create_prim_func([*placeholders, topi_op(*placeholders)])
            func = mod[call.args[0]]
            if not structural_equal(func.body, expected.body, map_free_vars=True):
                return call
            relax_op = relax.op.maximum if match.group(1) == "maximum" else relax.op.minimum
            return relax_op(*args)

    return _rewrite_relax_functions(mod, _ClipRewriter(mod))


def convert_to_blocked_layout(mod: Any, block: int) -> Any:
    """Run the network's convolutions and what follows them in NCHW{c}c (see the module docstring).

    Expects constants folded (weights and biases as constants) and Clip as Relax ops
    (:func:`clip_calls_to_relax`). Returns the module with unused NCHW twins removed.
    """
    return _rewrite_relax_functions(mod, _make_converter(mod, block))


def _rewrite_relax_functions(mod: Any, mutator: Any) -> Any:
    """Run `mutator` over every Relax function of `mod` (keeping the PrimFuncs it adds), then drop
    what nothing uses."""
    from tvm import relax

    for gvar, func in list(mod.functions.items()):
        if isinstance(func, relax.Function):
            mutator.builder_.update_func(gvar, mutator.visit_expr(func))
    return relax.transform.DeadCodeElimination()(mutator.builder_.get())


def _make_converter(mod: Any, block: int) -> Any:
    import tvm
    from tvm import relax
    from tvm.ir.expr import GenericConst
    from tvm.relax.expr_functor import PyExprMutator, mutator

    @mutator
    class _BlockedLayout(PyExprMutator):
        def __init__(self, module: Any) -> None:
            super().__init__(module)
            self.blocked: dict[Any, tuple[Any, int]] = {}  # NCHW var -> (its NCHW{c}c twin, c)
            self.gathered: dict[Any, ChannelMap] = {}  # a gather's blocked output -> where its channels come from

        # --- helpers -------------------------------------------------------------------------
        def twin(self, var: Any, size: int) -> Any:
            """`var`'s blocked twin with block `size`, converting it if it has none."""
            known = self.blocked.get(var)
            if known is not None and known[1] == size:
                return known[0]
            value = self.builder_.emit(relax.op.layout_transform(var, lambda n, c, h, w: to_blocked(
                n, c, h, w, block=size), pad_value=0.0), "blocked")
            self.blocked.setdefault(var, (value, size))
            return value

        def bind(self, original: Any, value: Any, size: int) -> None:
            """`value` (blocked) now stands for `original`: emit its NCHW twin under the original's kind."""
            nchw = relax.op.layout_transform(value, lambda n, c_outer, h, w, c_inner: (
                n, c_outer * size + c_inner, h, w))
            channels = _shape(original)[1]
            if _carries_padding(value, size, channels):  # drop the padded channels
                nchw = relax.op.strided_slice(self.builder_.emit(nchw, "padded"), axes=[1], begin=[0],
                                              end=[channels])
            if isinstance(original, relax.DataflowVar):
                new_var = self.builder_.emit(nchw, original.name)
            else:
                new_var = self.builder_.emit_output(nchw, original.name)
            self.set_var_remap(original, new_var)
            self.blocked[new_var] = (value, size)

        # --- the rewrite ---------------------------------------------------------------------
        def visit_var_binding_(self, binding: Any) -> None:
            value = self.visit_expr(binding.value)
            result = None
            if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op):
                result = self.convert(value)
            elif isinstance(value, relax.TupleGetItem) and value.index == 0:
                result = self.dropout_output(value.tuple_value)
            if result is not None:
                self.bind(binding.var, *result)
                return
            super().visit_var_binding_(binding)

        def is_padded(self, var: Any) -> bool:
            """True when `var`'s blocked twin carries padded channels."""
            value, size = self.blocked[var]
            return _carries_padding(value, size, _shape(var)[1])

        def dropout_output(self, tuple_var: Any) -> tuple[Any, int] | None:
            """Dropout's output at inference is its input (the mask is unused)."""
            producer = self.lookup_binding(tuple_var) if isinstance(tuple_var, relax.Var) else None
            if not isinstance(producer, relax.Call) or getattr(producer.op, "name", "") != "relax.nn.dropout":
                return None
            return self.blocked.get(producer.args[0])

        def convert(self, call: Any) -> tuple[Any, int] | None:
            name = call.op.name
            if name == "relax.nn.conv2d":
                return self.conv2d(call)
            if name in _ELEMENTWISE:
                return self.elementwise(call)
            if name == "relax.concat":
                return self.concat(call)
            if name == "relax.strided_slice":
                return self.channel_slice(call)
            if name == "relax.reshape":
                return self.channel_shuffle(call)
            if name in _POOLS:
                return self.pool(call)
            if name == "relax.mean":
                return self.spatial_mean(call)
            return None

        def conv2d(self, call: Any) -> tuple[Any, int] | None:
            attrs = call.attrs
            data, weight = call.args
            data_shape, weight_shape = _shape(data), _shape(weight)
            if (attrs.data_layout, attrs.kernel_layout, str(attrs.out_layout)) != ("NCHW", "OIHW", "NCHW"):
                return None
            if static_ints(attrs.dilation) != (1, 1) or not isinstance(weight, GenericConst):
                return None
            if data_shape is None or weight_shape is None or len(data_shape) != 4:
                return None
            in_channels, out_channels, groups = data_shape[1], weight_shape[0], int(attrs.groups)
            depthwise = groups > 1 and groups == in_channels == out_channels and weight_shape[1] == 1
            if groups != 1 and not depthwise:
                return self.grouped_conv2d(call, groups)
            known = self.blocked.get(data)
            out_shape = _shape(call)
            positions = out_shape[2] * out_shape[3] if out_shape is not None and len(out_shape) == 4 else None
            out_block = known[1] if depthwise and known else choose_block(out_channels, block, positions)
            if out_block == 0:
                return None
            if depthwise:
                source = self.twin(data, out_block)
                kernel = block_depthwise_kernel(weight.value.numpy(), out_block)
            else:
                if known is not None:
                    source, in_block = known
                elif in_channels < block and not block_for(in_channels, block):
                    source, in_block = data, in_channels  # a stem: read NCHW directly
                elif in_block := choose_block(in_channels, block):
                    source = self.twin(data, in_block)
                else:
                    return None
                kernel = block_dense_kernel(weight.value.numpy(), in_block, out_block)
            value = self.builder_.call_te(
                conv2d_nchwc, source, relax.const(kernel), strides=static_ints(attrs.strides),
                padding=static_ints(attrs.padding), depthwise=depthwise, out_dtype=conv_out_dtype(call),
                primfunc_name_hint="depthwise_conv2d_nchwc" if depthwise else "conv2d_nchwc",
            )
            return self.builder_.emit(value, "conv_blocked"), out_block

        def grouped_conv2d(self, call: Any, groups: int) -> tuple[Any, int] | None:
            """A grouped convolution whose groups hold whole blocks of input and output channels (no
            padding: a padded block would straddle two groups); the input is re-blocked if its block
            does not divide a group's channels."""
            data, weight = call.args
            in_per_group, out_per_group = _shape(data)[1] // groups, _shape(weight)[0] // groups
            in_block, out_block = block_for(in_per_group, block), block_for(out_per_group, block)
            if not in_block or not out_block:
                return None
            attrs = call.attrs
            known = self.blocked.get(data)
            if known is not None and known[1] != in_block:  # re-block the blocked tensor, not its NCHW twin
                source = self.gather(self.channel_map(data), size=in_block)[0]
            else:
                source = self.twin(data, in_block)
            kernel = block_dense_kernel(weight.value.numpy(), in_block, out_block)
            value = self.builder_.call_te(
                conv2d_nchwc, source, relax.const(kernel), strides=static_ints(attrs.strides),
                padding=static_ints(attrs.padding), depthwise=False, out_dtype=conv_out_dtype(call), groups=groups,
                primfunc_name_hint="group_conv2d_nchwc",
            )
            return self.builder_.emit(value, "conv_blocked"), out_block

        def elementwise(self, call: Any) -> tuple[Any, int] | None:
            out_shape = _shape(call)
            if out_shape is None or len(out_shape) != 4:
                return None
            sizes = {self.blocked[a][1] for a in call.args if a in self.blocked}
            if len(sizes) != 1:
                return None
            size = sizes.pop()
            padded = padded_channels(out_shape[1], size) != out_shape[1]
            args = []
            for position, arg in enumerate(call.args):
                divisor = call.op.name == "relax.divide" and position == 1
                arg_shape = _shape(arg)
                if not isinstance(arg, relax.Expr) or arg_shape is None:
                    args.append(arg)  # attribute-like arguments (PrimValue bounds)
                elif arg_shape == out_shape or _broadcasts_per_channel(arg_shape, out_shape):
                    if divisor and padded:
                        return None  # padded lanes of a divisor may be zero: 0 / 0 would not stay finite
                    args.append(self.twin(arg, size))  # [n, C/c, 1, 1, c] broadcasts as [n, C, 1, 1] does
                elif isinstance(arg, GenericConst):
                    blocked_value = block_channel_constant(arg.value.numpy(), out_shape[1], size,
                                                           fill=1.0 if divisor else 0.0)
                    if blocked_value is None:
                        return None
                    args.append(relax.const(blocked_value))
                elif arg_shape == ():
                    args.append(arg)
                else:
                    return None
            return self.builder_.emit(relax.Call(call.op, args, call.attrs), "blocked"), size

        def concat(self, call: Any) -> tuple[Any, int] | None:
            parts = call.args[0]
            if int(call.attrs.axis) not in (1, -3) or not isinstance(parts, relax.Tuple):
                return None
            if any(p not in self.blocked for p in parts.fields):
                return None
            sizes = {self.blocked[p][1] for p in parts.fields}
            if len(sizes) == 1 and not any(self.is_padded(p) for p in parts.fields):
                size = sizes.pop()  # whole blocks: the blocked tensors joined as they are
                joined = relax.op.concat([self.blocked[p][0] for p in parts.fields], axis=1)
                return self.builder_.emit(joined, "blocked"), size
            # Padded parts would leave gaps between the channels, mixed blocks do not line up: gather.
            maps = [self.channel_map(p) for p in parts.fields]
            joined_map = ChannelMap.concat(maps) or ChannelMap.concat(
                [self.own_map(p) for p in parts.fields], limit=None)
            return self.gather(joined_map)

        def channel_slice(self, call: Any) -> tuple[Any, int] | None:
            """A strided slice along the channels (ShuffleNet's split) of a blocked tensor."""
            data = call.args[0]
            data_shape = _shape(data)
            if data not in self.blocked or data_shape is None or len(data_shape) != 4:
                return None
            axes, begin, end = (_tuple_ints(a) for a in call.args[1:4])
            strides = _tuple_ints(call.args[4]) if len(call.args) > 4 else (1,)
            if axes is None or len(axes) != 1 or axes[0] % 4 != 1 or None in (begin, end, strides):
                return None
            order = slice_order(data_shape[1], begin[0], end[0], strides[0])
            return self.gather(self.channel_map(data).select(order)) if order else None

        def channel_shuffle(self, call: Any) -> tuple[Any, int] | None:
            """reshape(permute_dims(reshape(x))) that only reorders x's channels (a channel shuffle)."""
            out_shape = _shape(call)
            transposed = self.producer(call.args[0], "relax.permute_dims")
            split = self.producer(transposed.args[0], "relax.reshape") if transposed is not None else None
            if split is None or out_shape is None or len(out_shape) != 4 or transposed.attrs.axes is None:
                return None
            source, split_shape = split.args[0], _shape(split)
            if source not in self.blocked or _shape(source) != out_shape or split_shape is None:
                return None
            batch, channels, height, width = out_shape
            inner = split_shape[1:-2]
            axes = [int(a) for a in transposed.attrs.axes]
            rank = len(split_shape)
            if (split_shape[0], *split_shape[-2:]) != (batch, height, width) or int(np.prod(inner)) != channels:
                return None
            if axes[0] != 0 or axes[-2:] != [rank - 2, rank - 1]:
                return None
            order = shuffle_order(channels, inner, tuple(a - 1 for a in axes[1:-2]))
            return self.gather(self.channel_map(source).select(order))

        def producer(self, var: Any, op_name: str) -> Any:
            """The call to `op_name` bound to `var` in the rewritten function, or None."""
            value = self.lookup_binding(var) if isinstance(var, relax.Var) else None
            if isinstance(value, relax.Call) and getattr(value.op, "name", "") == op_name:
                return value
            return None

        def own_map(self, var: Any) -> ChannelMap:
            """The channels of `var`'s blocked twin, read as they are."""
            value, size = self.blocked[var]
            return ChannelMap.identity(value, size, _shape(var)[1])

        def channel_map(self, var: Any) -> ChannelMap:
            """Where `var`'s channels come from: through the gathers that made it, back to their sources."""
            return self.gathered.get(self.blocked[var][0]) or self.own_map(var)

        def gather(self, channel_map: ChannelMap, size: int | None = None) -> tuple[Any, int] | None:
            """Emit the blocked tensor `channel_map` describes (block `size`, by default chosen for its width)."""
            channels = len(channel_map.channels)
            size = size or choose_block(channels, block)
            if size == 0:
                return None
            table = channel_map.tables(padded_channels(channels, size))
            value = self.builder_.emit(self.builder_.call_te(
                gather_channels_nchwc, *[s for s, _ in channel_map.sources], relax.const(table), block=size,
                primfunc_name_hint="gather_channels_nchwc"), "gathered")
            self.gathered[value] = channel_map
            return value, size

        def pool(self, call: Any) -> tuple[Any, int] | None:
            data = call.args[0]
            attrs = call.attrs
            if data not in self.blocked or attrs.layout != "NCHW" or str(attrs.out_layout) != "NCHW":
                return None
            source, size = self.blocked[data]
            pool_op = relax.op.nn.max_pool2d if call.op.name == "relax.nn.max_pool2d" else relax.op.nn.avg_pool2d
            pooled = pool_op(
                source, pool_size=static_ints(attrs.pool_size), strides=static_ints(attrs.strides),
                padding=static_ints(attrs.padding), dilation=static_ints(attrs.dilation),
                ceil_mode=bool(attrs.ceil_mode), count_include_pad=bool(attrs.count_include_pad),
                layout=f"NCHW{size}c", out_layout=f"NCHW{size}c",
            )
            return self.builder_.emit(pooled, "blocked"), size

        def spatial_mean(self, call: Any) -> tuple[Any, int] | None:
            data = call.args[0]
            axes = call.attrs.axis
            if data not in self.blocked or axes is None or not bool(call.attrs.keepdims):
                return None
            if sorted(int(a) % 4 for a in axes) != [2, 3]:
                return None
            source, size = self.blocked[data]
            return self.builder_.emit(relax.op.mean(source, axis=[2, 3], keepdims=True), "blocked"), size

    return _BlockedLayout(mod)

"""Strided NCHW convolutions computed on a polyphase copy of their input, so they vectorise.

A stride-2 convolution reads every second input column: in NCHW the loads under its innermost
(output-width) loop are strided, so LLVM cannot vectorise them and MetaSchedule's best schedules for
mbconv-96's stride-2 depthwise layers were scalar. Here the padded input is first split into its
stride x stride phases, `phase[n, c, py, px, h, w] = padded[n, c, h*sh + py, w*sw + px]`, and the
convolution reads `phase[.., ry % sh, rx % sw, y + ry // sh, x + rx // sw]`: contiguous in x. The
split replaces the padding copy TOPI's convolution makes anyway, so it costs no extra pass.

Used as a custom legalization of `relax.nn.conv2d` (see :func:`legalize_strided_conv2d`); every other
convolution keeps TVM's own legalization. On CPU targets most convolutions are moved to the
channel-blocked layout first (blocked_layout.py), where strides do not break vectorisation; this
lowering covers the strided NCHW ones left (grouped convolutions, targets without the blocked pass).
"""

from __future__ import annotations

from typing import Any


def polyphase_conv2d_nchw(data: Any, kernel: Any, strides: tuple[int, int], padding: tuple[int, int, int, int],
                          groups: int, out_dtype: str) -> Any:
    """TE: NCHW / OIHW convolution (no dilation) of `data` by `kernel` via a polyphase padded input."""
    from tvm import te, tirx

    n_batch, channels, height, width = (int(d) for d in data.shape)
    out_channels, group_in, k_h, k_w = (int(d) for d in kernel.shape)
    s_h, s_w = strides
    pad_top, pad_left, pad_bottom, pad_right = padding
    out_h = (height + pad_top + pad_bottom - k_h) // s_h + 1
    out_w = (width + pad_left + pad_right - k_w) // s_w + 1
    phase_h, phase_w = out_h + (k_h - 1) // s_h, out_w + (k_w - 1) // s_w
    zero = tirx.const(0, data.dtype)

    def phase(n, c, py, px, h, w):
        y, x = h * s_h + py - pad_top, w * s_w + px - pad_left
        inside = tirx.all(y >= 0, y < height, x >= 0, x < width)
        return tirx.if_then_else(inside, data[n, c, y, x], zero)

    phases = te.compute((n_batch, channels, s_h, s_w, phase_h, phase_w), phase, name="polyphase_pad")
    rc = te.reduce_axis((0, group_in), name="rc")
    ry = te.reduce_axis((0, k_h), name="ry")
    rx = te.reduce_axis((0, k_w), name="rx")
    per_group = out_channels // groups

    def conv(n, o, y, x):
        c = o // per_group * group_in + rc
        value = phases[n, c, ry % s_h, rx % s_w, y + ry // s_h, x + rx // s_w].astype(out_dtype)
        return te.sum(value * kernel[o, rc, ry, rx].astype(out_dtype), axis=[rc, ry, rx])

    return te.compute((n_batch, out_channels, out_h, out_w), conv, name="conv2d_polyphase")


def static_ints(values: Any) -> tuple[int, ...] | None:
    """`values` (shape dims or attribute entries) as ints; None when any is not a constant."""
    try:
        return tuple(int(v) for v in values)
    except (TypeError, ValueError):
        return None


def conv_out_dtype(call: Any) -> str:
    """A Relax conv2d's output dtype: its `out_dtype` attribute, or its input's dtype when unset."""
    out_dtype = str(call.attrs.out_dtype)
    return out_dtype if out_dtype not in ("", "void", "None") else str(call.args[0].ty.dtype)


def legalize_strided_conv2d(bb: Any, call: Any) -> Any:
    """Legalize a strided NCHW conv2d with static shapes via :func:`polyphase_conv2d_nchw`; any other
    conv2d the way TVM does."""
    from tvm.relax.transform.legalize_ops.nn import _nn_conv2d

    attrs = call.attrs
    strides = static_ints(attrs.strides)
    data_shape = static_ints(call.args[0].ty.shape or ())
    kernel_shape = static_ints(call.args[1].ty.shape or ())
    eligible = (
        attrs.data_layout == "NCHW" and attrs.kernel_layout == "OIHW" and attrs.out_layout == "NCHW"
        and strides is not None and max(strides) > 1 and static_ints(attrs.dilation) == (1, 1)
        and data_shape is not None and len(data_shape) == 4 and kernel_shape is not None
    )
    if not eligible:
        return _nn_conv2d(bb, call)
    return bb.call_te(
        polyphase_conv2d_nchw, call.args[0], call.args[1], strides=strides,
        padding=static_ints(attrs.padding), groups=int(attrs.groups), out_dtype=conv_out_dtype(call),
        primfunc_name_hint="conv2d",
    )

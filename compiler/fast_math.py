"""Sigmoid (and with it SiLU and squeeze-excitation gates) lowered through TVM's fast exponential.

TVM lowers `sigmoid` to `1 / (1 + exp(-x))` with LLVM's exp, which has no vector form without a
vector math library: a vectorised sigmoid becomes one libm call per lane, and EfficientNet-style
networks, with a SiLU after nearly every convolution, spent most of their time there. TOPI's
`fast_exp` is a polynomial in vector arithmetic (range reduction, then a degree-7 polynomial;
relative error about 1e-7 in float32), the one TVM's own FastMath pass used.
"""

from __future__ import annotations

from typing import Any

SIGMOID = "fast-exp"  # how sigmoid is lowered, in the toolchain id (toolchain.py)


def fast_sigmoid(x: Any) -> Any:
    """TE: 1 / (1 + fast_exp(-x)) for a float32 tensor."""
    from tvm import te, tirx, topi

    denominator = topi.fast_exp(topi.negative(x))
    one = tirx.const(1.0, x.dtype)
    return te.compute(x.shape, lambda *i: one / (one + denominator(*i)), name="fast_sigmoid")


def legalize_sigmoid(bb: Any, call: Any) -> Any:
    """Legalize relax.sigmoid of float32 with :func:`fast_sigmoid`; other dtypes the way TVM does."""
    from tvm import topi
    from tvm.relax.transform.legalize_ops.common import _call_topi_without_attr

    if call.args[0].ty.dtype != "float32":
        return _call_topi_without_attr(topi.sigmoid, "tir_sigmoid")(bb, call)
    return bb.call_te(fast_sigmoid, call.args[0], primfunc_name_hint="sigmoid")

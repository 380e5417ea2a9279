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


def tvm_version() -> str:
    """The installed TVM's version."""
    import tvm

    return str(tvm.__version__)

"""The host CPU as a TVM target: AVX-512 aware, never ``mcpu=native`` (TVM does not resolve it)."""

from __future__ import annotations

import functools
import os
from typing import Any

# Newest first: the first one this TVM's LLVM knows is used when the host's own name is unknown.
_X86_FALLBACKS = ("znver5", "znver4", "sapphirerapids", "icelake-server", "skylake-avx512", "haswell", "x86-64")


@functools.lru_cache(maxsize=1)
def host_target() -> dict[str, Any]:
    """The host's LLVM target as a JSON dict, e.g. ``{"kind": "llvm", "mcpu": "znver5", ...}``."""
    from tvm.target import codegen

    triple = str(codegen.llvm_get_system_triple())
    arch = triple.split("-")[0]
    norm_triple = f"{arch}-linux-gnu"
    cpu = str(codegen.llvm_get_system_cpu())
    if cpu in ("", "generic") or not codegen.llvm_is_valid_cpu(cpu, norm_triple):
        candidates = _X86_FALLBACKS if arch == "x86_64" else ("generic",)
        cpu = next((c for c in candidates if codegen.llvm_is_valid_cpu(c, norm_triple)), "generic")
    return {"kind": "llvm", "mtriple": norm_triple, "mcpu": cpu, "num-cores": os.cpu_count() or 1}

"""Relax IRModule -> a library for the device: lower, apply tuning records, compile, link."""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasc.devices.spec import DeviceSpec
from nasc.errors import CompileError

from .blocked_layout import channel_block, clip_calls_to_relax, convert_to_blocked_layout
from .concat_fusion import fuse_concat_into_pools, inline_fused_concatenations
from .default_schedule import apply_fixed_schedules
from .fast_math import legalize_sigmoid
from .frontend import import_onnx
from .onnx_model import load_onnx
from .strided_conv import legalize_strided_conv2d
from .target import library_linker, tvm_target
from .tune import open_database

# How the Relax VM runs a library's main function: "compiled" turns its instructions into one native
# function instead of bytecode the VM interprets (less overhead between a network's kernels).
VM_EXEC_MODE = "compiled"
# How strided convolutions are lowered (strided_conv.py); part of the latency table's version key.
STRIDED_CONV = "polyphase"
_NOISE = re.compile(rb"^Warning: Scope Saving:.*\n?", re.MULTILINE)


def lower_for_tuning(mod: Any, target: Any) -> Any:
    """Decompose inference ops and run the zero pipeline (legalize, fold, fuse): the tuning view.

    On CPU targets the network runs in a channel-blocked layout (blocked_layout.py); strided NCHW
    convolutions left over are legalized on a polyphase input (strided_conv.py), sigmoid with a
    vectorisable exponential (fast_math.py), the rest as TVM does.
    """
    import tvm
    from tvm.relax import transform

    with target:
        mod = transform.CanonicalizeBindings()(transform.DecomposeOpsForInference()(mod))
        block = channel_block(target)
        if block:
            mod = clip_calls_to_relax(transform.FoldConstant()(mod))
            mod = convert_to_blocked_layout(mod, block)
        mod = transform.LegalizeOps(customize_legalize_map={
            "relax.nn.conv2d": legalize_strided_conv2d, "relax.sigmoid": legalize_sigmoid})(mod)
        # TVM's "zero" pipeline (less its LegalizeOps, done above); concatenations fused into pools reading them.
        return tvm.transform.Sequential([
            transform.AnnotateTIROpPattern(),
            transform.FoldConstant(),
            transform.FuseOps(),
            fuse_concat_into_pools(),
            transform.FuseTIR(),
            inline_fused_concatenations(),
        ])(mod)


def apply_database(mod: Any, target: Any, database: Any) -> tuple[Any, int]:
    """Replace each fused operator that has a tuning record by its best schedule.

    Returns the module and how many operators got a tuned schedule.
    """
    from tvm.relax import transform

    if database is None:
        return mod, 0
    with target, database:
        tuned = transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
    applied = sum(
        1 for _, func in tuned.functions.items() if getattr(func, "attrs", None) is not None
        and func.attrs.get("tirx.is_scheduled", False)
    )
    return tuned, applied


@contextlib.contextmanager
def filtered_native_output() -> Iterator[None]:
    """Hide export_library's 'Warning: Scope Saving:' lines (native stderr noise), keep the rest."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, io.UnsupportedOperation):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            capture.seek(0)
            rest = _NOISE.sub(b"", capture.read())
            if rest.strip():
                os.write(fd, rest)


@dataclass(frozen=True)
class KernelCounts:
    """The kernels the network's main function calls, as compile.json records them: where per-call
    overhead and data movement come from. A fused kernel is named by TVM after the operators it holds,
    so a call whose kernel's name holds "layout_transform" converts between the plain and the blocked
    layout (alone, or fused with the operators beside it)."""

    calls: int  # kernel calls per run of the network
    kernels: int  # distinct kernels
    layout_transform_calls: int

    def to_dict(self) -> dict[str, int]:
        """For compile.json."""
        return {"calls": self.calls, "kernels": self.kernels, "layout_transform_calls": self.layout_transform_calls}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KernelCounts:
        """Inverse of :meth:`to_dict`."""
        return cls(int(data["calls"]), int(data["kernels"]), int(data["layout_transform_calls"]))


def kernel_counts(lowered: Any) -> KernelCounts:
    """Count the kernel calls of a lowered module's main function (call_tir and direct PrimFunc calls)."""
    calls = kernel_calls(lowered)
    return KernelCounts(sum(calls.values()), len(calls),
                        sum(n for name, n in calls.items() if "layout_transform" in name))


def kernel_calls(lowered: Any) -> Counter[str]:
    """Calls per run of each kernel (PrimFunc) a lowered module's main function calls."""
    import tvm
    from tvm import relax

    calls: Counter[str] = Counter()
    call_tir = tvm.ir.Op.get("relax.call_tir")

    def visit(expr: Any) -> None:
        if not isinstance(expr, relax.Call):
            return
        if expr.op.same_as(call_tir):
            calls[expr.args[0].name_hint] += 1
        elif isinstance(expr.op, tvm.ir.GlobalVar) and isinstance(lowered[expr.op], tvm.tirx.PrimFunc):
            calls[expr.op.name_hint] += 1

    relax.analysis.post_order_visit(lowered["main"].body, visit)
    return calls


def lower_and_apply(mod: Any, device: DeviceSpec, database: Any = None) -> tuple[Any, int]:
    """The module as it will be built for the device: lowered, tuned schedules applied, the fixed
    schedule (default_schedule.py) where an operator has none; and how many operators got a tuned one."""
    target = tvm_target(device)
    tuned, applied = apply_database(lower_for_tuning(mod, target), target, database)
    return apply_fixed_schedules(tuned), applied


def compile_module(mod: Any, device: DeviceSpec, database: Any = None) -> tuple[Any, int]:
    """Build for the device's target (VM in VM_EXEC_MODE); returns the executable and the tuned-operator count."""
    lowered, applied = lower_and_apply(mod, device, database)
    return build_lowered(lowered, device), applied


def build_lowered(lowered: Any, device: DeviceSpec) -> Any:
    """The executable of a module from :func:`lower_and_apply`."""
    from tvm import relax

    target = tvm_target(device)
    try:
        with filtered_native_output():
            executable = relax.build(lowered, target=target, exec_mode=VM_EXEC_MODE)
    except Exception as exc:
        raise CompileError(f"TVM failed to build for device '{device.name}': {type(exc).__name__}: {exc}") from exc
    return executable


def export_executable(executable: Any, device: DeviceSpec, out_path: str | Path) -> Path:
    """export_library with the device's linker, written atomically to `out_path`."""
    linker = library_linker(device)
    target = Path(out_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        with filtered_native_output():
            if linker is None:
                executable.export_library(tmp_name)
            else:
                executable.export_library(tmp_name, fcompile=linker)
        os.replace(tmp_name, target)
    except Exception as exc:
        Path(tmp_name).unlink(missing_ok=True)
        raise CompileError(f"linking the library for device '{device.name}' failed: {exc}") from exc
    return target


def build_library(
    onnx_path: str | Path, device: DeviceSpec, out_path: str | Path, *, tuning_dir: Path | None = None
) -> Path:
    """ONNX file -> library for `device` at `out_path`, using tuning records in `tuning_dir` if any.

    No tuning and no verification: the quick path for single blocks of the latency table.
    """
    model = load_onnx(onnx_path)
    mod = import_onnx(model, str(onnx_path))
    database = open_database(tuning_dir) if tuning_dir is not None else None
    executable, _ = compile_module(mod, device, database)
    return export_executable(executable, device, out_path)

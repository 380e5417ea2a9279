"""DeviceSpec -> tvm.target.Target, and how to link a library for it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import Any

from nasc.devices.spec import DeviceSpec
from nasc.errors import ConfigError, ToolMissing

CROSS_COMPILER_PACKAGES = {
    "aarch64-linux-gnu-g++": "g++-aarch64-linux-gnu",
    "arm-linux-gnueabihf-g++": "g++-arm-linux-gnueabihf",
}


def tvm_target(device: DeviceSpec):  # -> tvm.target.Target
    """The device's TVM target (with its host target where one is set)."""
    import tvm

    try:
        target = tvm.target.Target(device.target)
        if device.host_target is not None:
            target = tvm.target.Target(device.target, host=device.host_target)
    except Exception as exc:
        raise ConfigError(
            f"device '{device.name}': TVM does not accept target {device.target!r}: {exc}. Use a tag such as "
            '"raspberry-pi/4b-aarch64" or a table such as '
            '{kind = "llvm", mtriple = "aarch64-linux-gnu", mcpu = "cortex-a72"}'
        ) from None
    return target


def target_dict(target: Any) -> dict[str, Any]:
    """A TVM target as a JSON-ready dict (lists for tuples)."""

    def plain(value: Any) -> Any:
        if isinstance(value, (str, int, float, bool)) or value is None:
            return value
        if hasattr(value, "export"):  # a nested Target (e.g. the host)
            return plain(value.export())
        if hasattr(value, "items"):  # dict or tvm_ffi Map
            return {str(k): plain(v) for k, v in value.items()}
        if hasattr(value, "__iter__"):  # list, tuple or tvm_ffi Array
            return [plain(v) for v in value]
        return str(value)

    return plain(target.export())


def target_triple(target: Any) -> str:
    """The LLVM triple the library is built for."""
    from tvm.target import codegen

    attrs = target_dict(target)
    host = attrs.get("host") if isinstance(attrs.get("host"), dict) else None
    for source in (attrs, host or {}):
        if source.get("mtriple"):
            return str(source["mtriple"])
    return str(codegen.llvm_get_system_triple()).replace("-conda-", "-")


def library_linker(device: DeviceSpec) -> Callable[..., Any] | None:
    """The `fcompile` for export_library: None for the host, a cross compiler otherwise."""
    compiler = device.cross_compiler
    if compiler is None:
        return None
    if compiler == "ndk":
        if not os.environ.get("TVM_NDK_CC"):
            raise ToolMissing(
                f"device '{device.name}' needs the Android NDK: set TVM_NDK_CC to the NDK's clang++ "
                "(e.g. .../toolchains/llvm/prebuilt/linux-x86_64/bin/aarch64-linux-android28-clang++)"
            )
        from tvm.support import ndk

        return ndk.create_shared
    if shutil.which(compiler) is None:
        package = CROSS_COMPILER_PACKAGES.get(compiler, compiler)
        raise ToolMissing(
            f"device '{device.name}' needs the cross compiler '{compiler}', which is not on PATH; "
            f"install it with: apt-get install -y {package}"
        )
    from tvm.support import cc

    return cc.cross_compiler(compiler)

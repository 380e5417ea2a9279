"""Built-in device profiles and the lookup that merges them with build.toml's [devices.*] tables."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nasc.errors import ConfigError, UnknownDevice

from .host import host_target
from .spec import Connection, DeviceSpec, Target

AARCH64_GXX = "aarch64-linux-gnu-g++"


def _local() -> DeviceSpec:
    return DeviceSpec(
        name="local",
        target=host_target(),
        connection=Connection(kind="local"),
        description="this machine's CPU, through a TVM RPC server nasc starts on 127.0.0.1",
        # Every CPU, as the target's num-cores says and tuning times candidates; TVM's own default takes half
        # of them on x86 (it assumes hyper-threads), which would time the table with another pool.
        threads=os.cpu_count() or 1,
    )


def _rpi4() -> DeviceSpec:
    return DeviceSpec(
        name="rpi4",
        target="raspberry-pi/4b-aarch64",
        connection=Connection(kind="tracker", host="127.0.0.1", port=9190, key="rpi4"),
        cross_compiler=AARCH64_GXX,
        description="Raspberry Pi 4 (cortex-a72, 4 cores, aarch64), served through a tracker",
    )


def _rpi4_emulated() -> DeviceSpec:
    return dataclasses.replace(
        _rpi4(),
        name="rpi4-emulated",
        connection=Connection(kind="emulated"),
        emulated=True,
        description="Raspberry Pi 4 target run under qemu-user on this machine (EMULATED timings)",
    )


def _jetson(name: str, mcpu: str, gpu_tag: str, label: str) -> Callable[[], DeviceSpec]:
    def make() -> DeviceSpec:
        return DeviceSpec(
            name=name,
            target={"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": mcpu, "num-cores": 4, "mattr": ["+neon"]},
            gpu_target=gpu_tag,
            connection=Connection(kind="tracker", host="127.0.0.1", port=9190, key=name),
            cross_compiler=AARCH64_GXX,
            description=f"{label} (CPU {mcpu}; CUDA target {gpu_tag} compiles here, runs only on the board)",
        )

    return make


def _android_arm64() -> DeviceSpec:
    return DeviceSpec(
        name="android-arm64",
        target={
            "kind": "llvm", "mtriple": "aarch64-linux-android", "mcpu": "cortex-a76", "num-cores": 8, "mattr": ["+neon"]
        },
        connection=Connection(kind="tracker", host="127.0.0.1", port=9190, key="android"),
        cross_compiler="ndk",
        description="Android phone (arm64); needs an NDK compiler: set TVM_NDK_CC to its clang++",
    )


BUILTIN_PROFILES: dict[str, Callable[[], DeviceSpec]] = {
    "local": _local,
    "rpi4": _rpi4,
    "rpi4-emulated": _rpi4_emulated,
    "jetson-nano": _jetson("jetson-nano", "cortex-a57", "nvidia/jetson-nano", "NVIDIA Jetson Nano"),
    "jetson-orin-nano": _jetson("jetson-orin-nano", "cortex-a78", "nvidia/jetson-orin-nano", "NVIDIA Jetson Orin Nano"),
    "android-arm64": _android_arm64,
}


@dataclass(frozen=True)
class DeviceOverride:
    """A [devices.NAME] table of build.toml: a new device, or changes to a built-in one."""

    base: str | None = None
    target: Target | None = None
    host_target: Target | None = None
    gpu_target: Target | None = None
    connection: str | None = None
    cross_compiler: str | None = None
    emulated: bool | None = None
    description: str | None = None
    threads: int | None = None


def known_device_names(overrides: Mapping[str, DeviceOverride] | None = None) -> list[str]:
    """Every device name that :func:`resolve_device` accepts."""
    return sorted(set(BUILTIN_PROFILES) | set(overrides or {}))


def resolve_device(
    name: str, overrides: Mapping[str, DeviceOverride] | None = None, source: str = "build.toml"
) -> DeviceSpec:
    """The DeviceSpec for `name`: build.toml's table applied over the built-in profile it names."""
    overrides = overrides or {}
    override = overrides.get(name)
    base_name = (override.base if override and override.base else None) or (name if name in BUILTIN_PROFILES else None)
    if override is None and base_name is None:
        known = ", ".join(known_device_names(overrides))
        raise UnknownDevice(
            f"unknown device '{name}'; known devices: {known}. "
            f"Define it under [devices.{name}] in {source} or pick one of those."
        )
    if base_name is not None and base_name not in BUILTIN_PROFILES:
        known = ", ".join(sorted(BUILTIN_PROFILES))
        raise UnknownDevice(
            f"{source}: key 'devices.{name}.base': no built-in profile '{base_name}'; built-ins: {known}"
        )
    if base_name is not None:
        spec = dataclasses.replace(BUILTIN_PROFILES[base_name](), name=name)
    else:
        assert override is not None
        if override.target is None:
            raise UnknownDevice(
                f"{source}: key 'devices.{name}.target': missing; a device without 'base' needs a TVM target "
                "(a tag such as \"raspberry-pi/4b-aarch64\" or a table such as {kind=\"llvm\", mtriple=...})"
            )
        spec = DeviceSpec(name=name, target=override.target, connection=Connection(kind="local"))
    if override is None:
        return spec
    changes: dict[str, Any] = {}
    for fld in ("target", "host_target", "gpu_target", "cross_compiler", "emulated", "description", "threads"):
        value = getattr(override, fld)
        if value is not None:
            changes[fld] = value
    if override.threads is not None and override.threads < 0:
        raise ConfigError(f"{source}: key 'devices.{name}.threads': must be >= 0 (0: the server's own setting), "
                          f"got {override.threads}")
    if override.connection is not None:
        changes["connection"] = Connection.parse(override.connection, f"{source}: key 'devices.{name}.connection'")
    return dataclasses.replace(spec, **changes)

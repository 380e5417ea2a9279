"""What this machine needs to build and run an emulated board: root, debootstrap, qemu-user-static, binfmt."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from nasc.errors import EmulationError, ToolMissing

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
APT_PACKAGES = "debootstrap qemu-user-static binfmt-support"
INSTALL_HINT = f"install them with: apt-get install -y {APT_PACKAGES}"


def require_root(action: str) -> None:
    """Raise EmulationError unless running as root (debootstrap, chroot and binfmt need it)."""
    if os.geteuid() != 0:
        raise EmulationError(
            f"{action} needs root (debootstrap, chroot and the binfmt handler are root-only); "
            "run it as root, e.g. sudo nasc devices emulate rpi4"
        )


def require_tool(executable: str, apt_package: str) -> str:
    """The path of `executable`, or ToolMissing naming the apt package that provides it."""
    path = shutil.which(executable)
    if path is None:
        raise ToolMissing(
            f"'{executable}' not found on PATH; it comes from the apt package {apt_package}: "
            f"apt-get install -y {apt_package} (an emulated board needs all of: {APT_PACKAGES})"
        )
    return path


@dataclass(frozen=True)
class BinfmtHandler:
    """A registered binfmt_misc handler (what the kernel runs foreign binaries with)."""

    name: str
    interpreter: Path
    flags: str

    @property
    def fixed(self) -> bool:
        """True when the kernel opened the interpreter at registration (flag F): it works inside a chroot."""
        return "F" in self.flags


def read_binfmt(name: str, binfmt_dir: Path = BINFMT_DIR) -> BinfmtHandler | None:
    """The enabled handler `name` (e.g. ``qemu-aarch64``), or None when absent or disabled."""
    try:
        lines = (binfmt_dir / name).read_text().splitlines()
    except OSError:
        return None
    if not lines or lines[0].strip() != "enabled":
        return None
    fields = {}
    for line in lines[1:]:  # "interpreter /usr/libexec/...", "flags: PF", "offset 0", "magic ..."
        key, _, value = line.partition(" ")
        fields[key.rstrip(":")] = value.strip()
    return BinfmtHandler(name, Path(fields.get("interpreter", "")), fields.get("flags", ""))


def ensure_binfmt(qemu_arch: str, binfmt_dir: Path = BINFMT_DIR) -> BinfmtHandler:
    """The enabled ``qemu-<arch>`` handler; mounts binfmt_misc and enables Debian's entry when needed."""
    name = f"qemu-{qemu_arch}"
    handler = read_binfmt(name, binfmt_dir)
    if handler is not None:
        return handler
    if not (binfmt_dir / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt_dir)],
                       capture_output=True, check=False)
    if read_binfmt(name, binfmt_dir) is None and shutil.which("update-binfmts"):
        subprocess.run(["update-binfmts", "--enable", name], capture_output=True, check=False)
    handler = read_binfmt(name, binfmt_dir)
    if handler is None:
        raise ToolMissing(
            f"no enabled binfmt handler '{name}' in {binfmt_dir}, so {qemu_arch} programs cannot run here; "
            f"{INSTALL_HINT}, then: update-binfmts --enable {name} "
            f"(binfmt_misc must be mounted on {binfmt_dir})"
        )
    return handler


def install_interpreter(rootfs: Path, handler: BinfmtHandler) -> None:
    """Copy a non-fixed handler's interpreter into `rootfs` at the same path (needed to run under chroot)."""
    if handler.fixed or not handler.interpreter.is_file():
        return
    inside = rootfs / handler.interpreter.relative_to("/")
    if inside.is_file() and inside.stat().st_size == handler.interpreter.stat().st_size:
        return
    inside.parent.mkdir(parents=True, exist_ok=True)
    tmp = inside.with_name(inside.name + ".nasc-tmp")
    shutil.copy2(handler.interpreter, tmp)
    tmp.replace(inside)


def check_host(qemu_arch: str, action: str) -> BinfmtHandler:
    """Everything needed to run an emulated board's programs: root, chroot and an enabled qemu handler."""
    require_root(action)
    require_tool("chroot", "coreutils")
    return ensure_binfmt(qemu_arch)

"""Build once and cache an emulated board's root file system (debootstrap + aarch64 TVM wheels).

The build happens in a temporary folder next to the cache entry and is renamed into place only
after it has been checked and stamped, so a half-built root file system is never used. A stamp
whose recipe hash differs from the current recipe means rebuild.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from nasc.errors import EmulationError
from nasc.fsutil import exclusive_lock

from .hostcheck import BinfmtHandler, check_host, install_interpreter, require_tool
from .mirror import debian_mirror
from .recipe import BoardRecipe, RootfsStamp, read_stamp, recipe_for, write_stamp

# (message, steps done, total steps): called as the build goes; messages include debootstrap's "I:" lines.
ProgressFn = Callable[[str, int, int], None]

BUILD_STEPS = 5
BUILD_TIME_HINT = "4 to 9 minutes on 2 busy cores"
WHEEL_DIR_INSIDE = "/tmp/nasc-wheels"
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def board_dir(board: str, cache_dir: Path) -> Path:
    """Where a board's root file system, build log and lock live: ``CACHE/emulated/BOARD``."""
    return Path(cache_dir) / "emulated" / recipe_for(board).board


def rootfs_path(board: str, cache_dir: Path) -> Path:
    """The cached root file system's folder (it exists only once complete)."""
    return board_dir(board, cache_dir) / "rootfs"


def cached_rootfs(board: str, cache_dir: Path) -> RootfsStamp | None:
    """The stamp of a complete, current root file system in the cache, or None (absent, stale, broken)."""
    stamp = read_stamp(rootfs_path(board, cache_dir))
    return stamp if stamp is not None and stamp.matches(recipe_for(board)) else None


def chroot_env() -> dict[str, str]:
    """A clean environment for programs inside the root file system (the host's venv must not leak in)."""
    return {"PATH": CHROOT_PATH, "HOME": "/root", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}


def ensure_rootfs(
    board: str,
    cache_dir: Path,
    progress: ProgressFn | None = None,
    *,
    mirror: str | None = None,
    rebuild: bool = False,
) -> Path:
    """The root file system of `board` under `cache_dir`, built first if missing or built from another recipe.

    Needs root, debootstrap, qemu-user-static and binfmt-support; takes 4 to 9 minutes when it builds.
    """
    recipe = recipe_for(board)
    final = rootfs_path(board, cache_dir)
    if not rebuild and cached_rootfs(board, cache_dir) is not None:
        return final
    handler = check_host(recipe.qemu_arch, f"building the emulated {recipe.board} root file system")
    debootstrap = require_tool("debootstrap", "debootstrap")
    final.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(final.parent / ".build.lock"):
        if not rebuild and cached_rootfs(board, cache_dir) is not None:
            return final  # another process built it while we waited for the lock
        _remove_stale_builds(final.parent)
        mirror = mirror or debian_mirror(recipe.suite)
        _build(recipe, final, mirror, debootstrap, handler, progress or _no_progress)
    return final


def _no_progress(message: str, done: int, total: int) -> None:
    return None


def _build(
    recipe: BoardRecipe, final: Path, mirror: str, debootstrap: str, handler: BinfmtHandler, progress: ProgressFn
) -> None:
    started = time.monotonic()
    log_path = final.parent / "build.log"
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    root = work / "rootfs"
    total = BUILD_STEPS
    try:
        with open(log_path, "w") as log:
            progress(f"debootstrap {recipe.suite} {recipe.debian_arch} from {mirror}", 0, total)
            _run_logged([debootstrap, *recipe.debootstrap_args(root, mirror)], log, log_path,
                        "debootstrap", lambda line: progress(line, 0, total))
            install_interpreter(root, handler)
            _clean_apt_cache(root)

            progress(f"checking that {recipe.machine} programs run under qemu-user", 1, total)
            machine = _chroot_output(root, ["python3", "-c", "import platform; print(platform.machine())"],
                                     log, log_path).strip()
            if machine != recipe.machine:
                raise EmulationError(
                    f"python3 inside {root} reports machine '{machine}', expected '{recipe.machine}'; "
                    f"the qemu-{recipe.qemu_arch} binfmt handler is not what runs it (see {log_path})"
                )

            progress(f"downloading {len(recipe.wheels)} {recipe.machine} wheels", 2, total)
            wheel_dir = root / WHEEL_DIR_INSIDE.lstrip("/")
            wheel_dir.mkdir(parents=True, exist_ok=True)
            pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
            _run_logged([*pip, *recipe.pip_download_args(wheel_dir)], log, log_path, "pip download of the wheels")
            wheels = sorted(p.name for p in wheel_dir.glob("*.whl"))
            if len(wheels) != len(recipe.wheels):
                raise EmulationError(f"pip downloaded {wheels}, expected one wheel for each of {list(recipe.wheels)}")

            progress("installing the wheels inside the root file system (under qemu)", 3, total)
            _run_logged(["chroot", str(root), "python3", "-m", "pip", "install", "--no-index", "--no-deps",
                         "--break-system-packages", "--root-user-action=ignore", "--disable-pip-version-check",
                         *(f"{WHEEL_DIR_INSIDE}/{name}" for name in wheels)],
                        log, log_path, "pip install inside the root file system", env=chroot_env())
            shutil.rmtree(wheel_dir)

            progress("checking the installed versions", 4, total)
            _check_versions(root, recipe, log, log_path)

            write_stamp(root, RootfsStamp(
                recipe=recipe,
                recipe_sha256=recipe.sha256(),
                mirror=mirror,
                wheel_files=tuple(wheels),
                built_at_utc=datetime.now(UTC).isoformat(timespec="seconds"),
                build_s=round(time.monotonic() - started, 1),
            ))
        if final.exists():
            final.rename(work / "previous")
        root.rename(final)
        progress(f"root file system ready at {final}", total, total)
    finally:
        _remove_tree(work)


def _run_logged(
    cmd: Sequence[str],
    log: TextIO,
    log_path: Path,
    what: str,
    on_line: Callable[[str], None] | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """Run `cmd`, appending its output to the build log; EmulationError with the log's tail when it fails."""
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    # Own process group: on Ctrl-C or an error the whole tree (debootstrap's dpkg, chrooted scripts) is stopped.
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, errors="replace", env=env, start_new_session=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if on_line is not None and line.startswith("I: "):
                on_line(line[3:].strip())
        code = proc.wait()
    finally:
        _stop_group(proc)
        log.flush()
    if code != 0:
        raise EmulationError(
            f"{what} failed (exit {code}); the root file system was not built. "
            f"Last lines of {log_path}:\n{_tail(log_path)}"
        )


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL, the process group of `proc` (a no-op once everything in it has exited)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if sig == signal.SIGKILL or proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()


def _chroot_output(root: Path, cmd: Sequence[str], log: TextIO, log_path: Path) -> str:
    result = subprocess.run(["chroot", str(root), *cmd], capture_output=True, text=True, env=chroot_env(),
                            stdin=subprocess.DEVNULL, check=False)
    log.write(f"$ chroot {root} {' '.join(cmd)}\n{result.stdout}{result.stderr}")
    log.flush()
    if result.returncode != 0:
        raise EmulationError(
            f"running '{' '.join(cmd)}' inside {root} failed (exit {result.returncode}): {result.stderr.strip()[-800:]}"
        )
    return result.stdout


_VERSION_PROBE = (
    "import json, importlib.metadata as m, platform, tvm, tvm.rpc, numpy, ml_dtypes; "
    "print(json.dumps({'machine': platform.machine(), "
    "'versions': {d: m.version(d) for d in %r}}))"
)


def _check_versions(root: Path, recipe: BoardRecipe, log: TextIO, log_path: Path) -> None:
    names = [spec.split("==")[0] for spec in recipe.wheels]
    probe = json.loads(_chroot_output(root, ["python3", "-c", _VERSION_PROBE % (names,)], log, log_path))
    for spec in recipe.wheels:
        name, _, version = spec.partition("==")
        got = probe["versions"].get(name)
        if version and got != version:
            raise EmulationError(f"{name} inside {root} is {got}, the recipe pins {version} (see {log_path})")


def _clean_apt_cache(root: Path) -> None:
    archives = root / "var/cache/apt/archives"
    for deb in archives.glob("*.deb"):
        deb.unlink()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def mounts_under(folder: Path) -> list[Path]:
    """Mount points at or below `folder` (deepest first), read from /proc/self/mounts."""
    folder = folder.resolve()
    found = []
    try:
        text = Path("/proc/self/mounts").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        point = Path(parts[1].replace("\\040", " ").replace("\\011", "\t"))
        if point == folder or folder in point.parents:
            found.append(point)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _remove_tree(folder: Path) -> None:
    """Delete a build folder, first unmounting what debootstrap left mounted inside (never deletes through a mount)."""
    if not folder.exists():
        return
    for point in mounts_under(folder):
        subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)
    left = mounts_under(folder)
    if left:
        raise EmulationError(
            f"cannot delete {folder}: still mounted inside it: {', '.join(map(str, left))}; unmount them and retry"
        )
    shutil.rmtree(folder, ignore_errors=True)


def _remove_stale_builds(folder: Path) -> None:
    """Remove build folders a killed build left behind (we hold the lock, so nobody is using them)."""
    for stale in folder.glob(".build-*"):
        if stale.is_dir():
            _remove_tree(stale)


def remove_rootfs(board: str, cache_dir: Path) -> bool:
    """Delete the cached root file system of `board` (True when there was one)."""
    final = rootfs_path(board, cache_dir)
    if not final.exists():
        return False
    with exclusive_lock(final.parent / ".build.lock"):
        doomed = final.parent / f".build-remove-{os.getpid()}"
        final.rename(doomed)
        _remove_tree(doomed)
    return True

"""Logic of the emulated board: apt sources, recipe/stamp, host checks, atomic builds (no real debootstrap here;
tests/emulated/ builds the real root file system)."""

from __future__ import annotations

import dataclasses
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nasc.devices.emulated import hostcheck, mirror, rootfs
from nasc.devices.emulated.hostcheck import BinfmtHandler, ensure_binfmt, read_binfmt
from nasc.devices.emulated.mirror import debian_mirror, read_apt_sources
from nasc.devices.emulated.recipe import (
    STAMP_NAME,
    RootfsStamp,
    read_stamp,
    recipe_for,
    write_stamp,
)
from nasc.devices.emulated.rootfs import cached_rootfs, ensure_rootfs, mounts_under, rootfs_path
from nasc.devices.emulated.server import emulated_server, server_command
from nasc.errors import ConfigError, DeviceUnreachable, EmulationError, ToolMissing

DEB822 = """\
Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
Components: main

Types: deb
# a comment line
URIs: http://mirror.example/debian
Suites: bookworm
  bookworm-updates
Components: main contrib
"""


def _apt_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    for name, text in files.items():
        (apt / name).write_text(text)
    return apt


def test_deb822_sources_give_the_release_mirror_not_security_or_src(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(mirror.MIRROR_ENV, raising=False)
    apt = _apt_dir(tmp_path, {"sources.list.d/debian.sources": DEB822})
    suites = [(s.uri, s.suite) for s in read_apt_sources(apt)]
    assert ("http://mirror.example/debian", "bookworm-updates") in suites  # continuation line read
    assert all(uri != "http://src.example/debian" for uri, _ in suites)  # deb-src ignored
    assert debian_mirror("bookworm", apt) == "http://mirror.example/debian"


def test_one_line_sources_with_options_and_disabled_files(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(mirror.MIRROR_ENV, raising=False)
    apt = _apt_dir(tmp_path, {
        "sources.list": "# deb http://old.example/debian bookworm main\n"
                        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian trixie main\n",
        "sources.list.d/other.list.disabled": "deb http://off.example/debian bookworm main\n",
        "sources.list.d/vendor.list": "deb https://vendor.example/apt cloud-bookworm main\n",
    })
    # No source names bookworm itself: any plain Debian release source serves it.
    assert debian_mirror("bookworm", apt) == "http://one.example/debian"


def test_no_debian_source_is_a_config_error_naming_the_override(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(mirror.MIRROR_ENV, raising=False)
    apt = _apt_dir(tmp_path, {"sources.list.d/vendor.list": "deb https://vendor.example/apt stable main\n"})
    with pytest.raises(ConfigError, match=mirror.MIRROR_ENV):
        debian_mirror("bookworm", apt)
    monkeypatch.setenv(mirror.MIRROR_ENV, "http://chosen.example/debian")
    assert debian_mirror("bookworm", apt) == "http://chosen.example/debian"


def test_recipe_lookup_aliases_and_unknown_board() -> None:
    assert recipe_for("rpi4-emulated") == recipe_for("rpi4")
    assert recipe_for("rpi4").debootstrap_args(Path("/r"), "http://m/debian")[-3:] == ["bookworm", "/r", "http://m/debian"]
    with pytest.raises(ConfigError, match="rpi4"):
        recipe_for("pdp11")


def _stamp(recipe=None) -> RootfsStamp:
    recipe = recipe or recipe_for("rpi4")
    return RootfsStamp(recipe=recipe, recipe_sha256=recipe.sha256(), mirror="http://m/debian",
                       wheel_files=("a.whl",), built_at_utc="2026-01-01T00:00:00+00:00", build_s=1.0)


def test_stamp_round_trip_and_recipe_change_means_stale(tmp_path: Path) -> None:
    recipe = recipe_for("rpi4")
    stamp = _stamp()
    assert RootfsStamp.from_dict(stamp.to_dict()) == stamp
    changed = dataclasses.replace(recipe, wheels=(*recipe.wheels[:-1], "numpy==2.0.0"))
    assert changed.sha256() != recipe.sha256()
    assert stamp.matches(recipe) and not stamp.matches(changed)
    write_stamp(tmp_path, stamp)
    assert read_stamp(tmp_path) == stamp
    (tmp_path / STAMP_NAME).write_text("{not json")
    assert read_stamp(tmp_path) is None


def test_cached_rootfs_only_for_a_complete_current_build(tmp_path: Path) -> None:
    final = rootfs_path("rpi4", tmp_path)
    final.mkdir(parents=True)
    assert cached_rootfs("rpi4", tmp_path) is None  # no stamp: half-built or foreign
    old = dataclasses.replace(recipe_for("rpi4"), packages=("python3",))
    write_stamp(final, _stamp(old))
    assert cached_rootfs("rpi4", tmp_path) is None  # built from another recipe
    write_stamp(final, _stamp())
    assert cached_rootfs("rpi4", tmp_path) == _stamp()
    # A current cached build is returned without any host check (no root needed to find it).
    assert ensure_rootfs("rpi4", tmp_path) == final


def test_not_root_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(EmulationError, match="needs root"):
        ensure_rootfs("rpi4", tmp_path)
    assert not rootfs_path("rpi4", tmp_path).exists()


def _fake_host(monkeypatch) -> None:
    monkeypatch.setattr(rootfs, "check_host", lambda arch, action: BinfmtHandler("qemu-x", Path("/nope"), "PF"))
    monkeypatch.setenv(mirror.MIRROR_ENV, "http://mirror.invalid/debian")


def test_missing_debootstrap_names_the_apt_package(tmp_path: Path, monkeypatch) -> None:
    _fake_host(monkeypatch)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(ToolMissing, match="apt-get install -y debootstrap"):
        ensure_rootfs("rpi4", tmp_path)


def _fake_debootstrap(bin_dir: Path, exit_code: int) -> None:
    bin_dir.mkdir()
    script = bin_dir / "debootstrap"
    # Writes part of a root file system, then fails like a broken mirror would.
    script.write_text(
        "#!/bin/sh\n"
        'target=""; for a; do case "$a" in --*|bookworm|http*) ;; *) target="$a";; esac; done\n'
        'mkdir -p "$target/usr/bin" && echo half > "$target/usr/bin/python3"\n'
        "echo 'I: Retrieving InRelease'\n"
        "echo 'E: Failed getting release file http://mirror.invalid/debian'\n"
        f"exit {exit_code}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_failed_build_leaves_no_rootfs_and_no_temp_folder(tmp_path: Path, monkeypatch) -> None:
    _fake_host(monkeypatch)
    _fake_debootstrap(tmp_path / "bin", exit_code=1)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    board = rootfs_path("rpi4", tmp_path).parent
    stale = board / ".build-stale"  # what a SIGKILLed build leaves behind
    (stale / "rootfs").mkdir(parents=True)
    seen: list[str] = []
    with pytest.raises(EmulationError, match="Failed getting release file") as info:
        ensure_rootfs("rpi4", tmp_path, progress=lambda msg, done, total: seen.append(msg))
    assert "build.log" in str(info.value)
    assert "Retrieving InRelease" in seen  # debootstrap's I: lines reach the progress callback
    assert not rootfs_path("rpi4", tmp_path).exists()
    assert sorted(p.name for p in board.iterdir()) == [".build.lock", "build.log"]


def test_read_binfmt_and_missing_handler_names_packages(tmp_path: Path) -> None:
    binfmt = tmp_path / "binfmt"
    binfmt.mkdir()
    (binfmt / "register").write_text("")  # looks mounted: nothing is mounted by the test
    (binfmt / "qemu-nasctest").write_text(
        "enabled\ninterpreter /usr/libexec/qemu-binfmt/nasctest-binfmt-P\nflags: P\noffset 0\nmagic 7f45\n"
    )
    handler = read_binfmt("qemu-nasctest", binfmt)
    assert handler == BinfmtHandler("qemu-nasctest", Path("/usr/libexec/qemu-binfmt/nasctest-binfmt-P"), "P")
    assert not handler.fixed
    (binfmt / "qemu-nasctest").write_text("disabled\ninterpreter /x\nflags: F\n")
    with pytest.raises(ToolMissing, match="apt-get install -y debootstrap qemu-user-static binfmt-support"):
        ensure_binfmt("nasctest", binfmt)


def test_non_fixed_interpreter_is_copied_into_the_rootfs(tmp_path: Path) -> None:
    interp = tmp_path / "host" / "qemu-fake"
    interp.parent.mkdir()
    interp.write_bytes(b"\x7fELF fake")
    root = tmp_path / "root"
    root.mkdir()
    hostcheck.install_interpreter(root, BinfmtHandler("qemu-x", interp, "P"))
    assert (root / interp.relative_to("/")).read_bytes() == b"\x7fELF fake"
    other = tmp_path / "root2"
    other.mkdir()
    hostcheck.install_interpreter(other, BinfmtHandler("qemu-x", interp, "PF"))
    assert not (other / interp.relative_to("/")).exists()


def test_server_command_is_the_stock_server_inside_the_chroot() -> None:
    cmd = server_command(Path("/cache/rootfs"), "127.0.0.1", 9200, 9210, tracker="127.0.0.1:9190", key="rpi4")
    assert cmd[:5] == ["chroot", "/cache/rootfs", "python3", "-m", "tvm.exec.rpc_server"]
    args = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    assert args == {"--host": "127.0.0.1", "--port": "9200", "--port-end": "9210",
                    "--tracker": "127.0.0.1:9190", "--key": "rpi4"}
    assert "--tracker" not in server_command(Path("/r"), "127.0.0.1", 9200)


def test_remote_bind_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    with pytest.raises(DeviceUnreachable, match=r"0\.0\.0\.0"):
        emulated_server("rpi4", tmp_path, host="0.0.0.0")
    assert not rootfs_path("rpi4", tmp_path).parent.exists()


def test_mounts_under_sees_real_mounts_only() -> None:
    assert Path("/") in mounts_under(Path("/"))
    assert mounts_under(Path(__file__).parent) == []


def test_sigterm_during_a_build_stops_debootstrap_and_leaves_nothing(tmp_path: Path) -> None:
    """serve_emulated in a child process, SIGTERM while (a slow fake) debootstrap runs: all cleaned up, and
    the progress stream says so."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pid_file = tmp_path / "debootstrap.pid"
    script = bin_dir / "debootstrap"
    script.write_text(
        "#!/bin/sh\n"
        'target=""; for a; do case "$a" in --*|bookworm|http*) ;; *) target="$a";; esac; done\n'
        'mkdir -p "$target/usr/bin"\n'
        "echo 'I: Retrieving InRelease'\n"
        f"echo $$ > {pid_file}\n"
        "exec sleep 120\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    cache = tmp_path / "cache"
    driver = (
        "from pathlib import Path\n"
        "from nasc.devices.emulated import rootfs, server\n"
        "from nasc.devices.emulated.hostcheck import BinfmtHandler\n"
        "rootfs.check_host = lambda arch, action: BinfmtHandler('qemu-x', Path('/nope'), 'PF')\n"
        "def show(event):\n"
        "    if event.message:\n"
        "        print(event.message, flush=True)\n"
        f"server.serve_emulated('rpi4', Path({str(cache)!r}), progress=show)\n"
    )
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           mirror.MIRROR_ENV: "http://mirror.invalid/debian"}
    proc = subprocess.Popen([sys.executable, "-c", driver], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.is_file() and pid_file.read_text().strip()) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[0]
            time.sleep(0.1)
        fake_pid = int(pid_file.read_text())
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert "stopping the emulated rpi4 build" in output
    with pytest.raises(ProcessLookupError):
        os.kill(fake_pid, 0)  # debootstrap (its whole process group) was stopped and reaped
    board = rootfs_path("rpi4", cache).parent
    assert sorted(p.name for p in board.iterdir()) == [".build.lock", "build.log"]

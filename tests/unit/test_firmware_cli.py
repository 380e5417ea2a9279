"""The package / verify verbs as a user runs them: output, exit codes, messages naming the bad file."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from click.testing import CliRunner
from firmware_testlib import write_compile_dir

from nasc.cli import main


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_package_then_verify_then_unpack(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = write_compile_dir(tmp_path / "compiled", b"library bytes")
    code, out, err = _run("package", "--from", str(folder))
    assert code == 0, err
    bundle = tmp_path / "model-local.tar.gz"  # the default name carries the device
    assert bundle.is_file() and "sha256" in out and "input [1, 3, 8, 8] float32 NCHW" in out
    code, out, err = _run("verify", str(bundle), "--unpack", str(tmp_path / "unpacked"))
    assert code == 0 and "OK (nasc.bundle/1)" in out and "model.so" in out
    assert (tmp_path / "unpacked" / "model.so").read_bytes() == b"library bytes"


def test_verify_exits_11_and_names_the_tampered_file(tmp_path: Path) -> None:
    folder = write_compile_dir(tmp_path / "compiled", b"library bytes")
    bundle = tmp_path / "b.tar.gz"
    assert _run("package", "--from", str(folder), "-o", str(bundle))[0] == 0
    tampered = tmp_path / "t.tar.gz"
    with tarfile.open(bundle) as src, tarfile.open(tampered, "w:gz") as dst:
        for info in src.getmembers():
            data = src.extractfile(info).read()  # type: ignore[union-attr]
            if info.name == "model_info.h":
                data = data.replace(b"NASC_NUM_INPUTS 1", b"NASC_NUM_INPUTS 2")
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    code, _, err = _run("verify", str(tampered))
    assert code == 11
    assert "model_info.h: sha256" in err and "Traceback" not in err


def test_package_of_a_missing_folder_says_what_to_run(tmp_path: Path) -> None:
    code, _, err = _run("package", "--from", str(tmp_path / "nope"), "-o", str(tmp_path / "b.tar.gz"))
    assert code == 3 and "no such folder" in err

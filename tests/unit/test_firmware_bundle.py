"""Bundles: deterministic bytes, verification naming the bad file, safe unpacking, manifest schema."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tarfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from firmware_testlib import write_compile_dir, write_measure_record, write_search_record

from nasc.errors import BundleCorrupt, InputError
from nasc.firmware_bridge.bundle import FIXED_MTIME, extract_bundle, verify_bundle
from nasc.firmware_bridge.manifest import SCHEMA, BundleManifest
from nasc.firmware_bridge.settings import PackageSettings
from nasc.pipeline.package import package

LIBRARY = b"\x7fELF not a real library: bundle logic only" * 50


@pytest.fixture()
def compile_dir(tmp_path: Path) -> Path:
    return write_compile_dir(tmp_path / "compiled", LIBRARY)


@pytest.fixture()
def bundle(compile_dir: Path, tmp_path: Path) -> Path:
    return Path(package(compile_dir, tmp_path / "model-local.tar.gz").bundle)


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def _write_tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_same_inputs_give_the_same_bytes(compile_dir: Path, tmp_path: Path) -> None:
    first = package(compile_dir, tmp_path / "a.tar.gz")
    copy = tmp_path / "elsewhere" / "compiled"
    shutil.copytree(compile_dir, copy)
    later = time.time() + 3600
    for f in copy.iterdir():
        os.utime(f, (later, later))
        f.chmod(0o600)
    second = package(copy, tmp_path / "b.tar.gz")
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    assert first.sha256 == second.sha256
    # and a different model gives different bytes (the check above can fail)
    other = write_compile_dir(tmp_path / "other", LIBRARY, seed=1)
    assert package(other, tmp_path / "c.tar.gz").sha256 != first.sha256


def test_tar_entries_are_sorted_with_fixed_owner_and_time(bundle: Path) -> None:
    raw = bundle.read_bytes()
    assert raw[4:8] == b"\x00\x00\x00\x00"  # gzip header mtime
    with tarfile.open(bundle, "r:gz") as tar:
        infos = tar.getmembers()
    names = [i.name for i in infos]
    assert names == sorted(names)
    assert {"manifest.json", "model.so", "model.onnx", "model_info.h", "example/main.cc", "example/Makefile",
            "sample/input-0.npy", "sample/expected-output-0.npy"} <= set(names)
    for info in infos:
        assert (info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode) == (FIXED_MTIME, 0, 0, "", "", 0o644)
        assert info.isfile()


def test_manifest_lists_every_file_with_its_hash(bundle: Path, compile_dir: Path) -> None:
    members = _members(bundle)
    manifest = BundleManifest.from_json(members["manifest.json"])
    assert sorted(e.path for e in manifest.files) == sorted(set(members) - {"manifest.json"})
    import hashlib

    for entry in manifest.files:
        assert entry.size_bytes == len(members[entry.path])
        assert entry.sha256 == hashlib.sha256(members[entry.path]).hexdigest()
    assert members["model.so"] == LIBRARY
    assert manifest.inputs[0].shape == (1, 3, 8, 8) and manifest.outputs[0].dtype == "float32"
    assert manifest.target_triple == "x86_64-linux-gnu" and manifest.versions["tvm"] == "0.27.0.post1"
    assert manifest.latency.device == "local" and manifest.latency.emulated is False


def test_expected_output_is_onnxruntime_on_the_sample(bundle: Path, compile_dir: Path) -> None:
    members = _members(bundle)
    x = np.load(io.BytesIO(members["sample/input-0.npy"]))
    want = np.load(io.BytesIO(members["sample/expected-output-0.npy"]))
    session = ort.InferenceSession(str(compile_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(["output"], {"input": x})
    assert x.shape == (1, 3, 8, 8) and x.dtype == np.float32 and float(np.std(x)) > 0.5
    np.testing.assert_allclose(want, got, rtol=1e-5, atol=1e-5)


def test_records_and_settings_reach_the_manifest(tmp_path: Path) -> None:
    folder = write_compile_dir(tmp_path / "c", LIBRARY)
    search = write_search_record(tmp_path / "search", test_accuracy=0.93, predicted_ms=1.5)
    write_measure_record(folder, median_ms=2.25, device="rpi4-emulated", emulated=True)
    settings = PackageSettings(preprocessing_mean=(0.5, 0.5, 0.5), preprocessing_std=(0.25, 0.25, 0.25),
                               preprocessing_resize=(8, 8), preprocessing_scale=1 / 255)
    manifest = package(folder, tmp_path / "b.tar.gz", settings, search_dir=search).manifest
    assert manifest.accuracy == 0.93 and manifest.arch == "arch.json"
    assert (manifest.latency.predicted_ms, manifest.latency.measured_median_ms) == (1.5, 2.25)
    assert manifest.latency.emulated is True and manifest.latency.device == "rpi4-emulated"
    assert manifest.preprocessing.mean == (0.5, 0.5, 0.5) and manifest.preprocessing.resize == (8, 8)
    assert {"arch.json", "search.json", "measure.json"} <= {e.path for e in manifest.files}


def test_search_and_measure_records_in_their_own_shapes(tmp_path: Path) -> None:
    folder = write_compile_dir(tmp_path / "c", LIBRARY)
    preprocessing = {"layout": "NCHW", "size": [3, 8, 8], "scale": "pixel values to [0, 1] (uint8 / 255)",
                     "mean": [0.1, 0.2, 0.3], "std": [0.5, 0.6, 0.7], "class_names": [str(i) for i in range(10)]}
    search = write_search_record(tmp_path / "search", test_accuracy=0.875, predicted_ms=0.42,
                                 preprocessing=preprocessing)
    write_measure_record(folder, median_ms=0.51, noisy=True)
    manifest = package(folder, tmp_path / "b.tar.gz", search_dir=search).manifest
    pre = manifest.preprocessing
    assert pre.resize == (8, 8) and pre.mean == (0.1, 0.2, 0.3) and pre.std == (0.5, 0.6, 0.7)
    assert pre.scale == 1.0 and "uint8 / 255" in pre.note and pre.class_names[9] == "9"
    assert manifest.accuracy == 0.875 and manifest.latency.predicted_ms == 0.42
    assert manifest.latency.measured_median_ms == 0.51 and manifest.latency.measured_noisy is True


def test_verify_passes_a_good_bundle(bundle: Path) -> None:
    report = verify_bundle(bundle)
    assert report.files_checked == len(report.manifest.files)


@pytest.mark.parametrize("victim", ["model.so", "sample/expected-output-0.npy", "model_info.h"])
def test_verify_names_a_tampered_file(bundle: Path, tmp_path: Path, victim: str) -> None:
    members = _members(bundle)
    data = bytearray(members[victim])
    data[len(data) // 2] ^= 0x01
    members[victim] = bytes(data)
    tampered = tmp_path / "tampered.tar.gz"
    _write_tar(tampered, members)
    with pytest.raises(BundleCorrupt) as info:
        verify_bundle(tampered)
    assert f"{victim}: sha256" in str(info.value)
    assert "1 problem" in str(info.value)


def test_verify_names_missing_extra_and_resized_files(bundle: Path, tmp_path: Path) -> None:
    members = _members(bundle)
    del members["model.onnx"]
    members["extra.bin"] = b"x"
    members["model.so"] += b"tail"
    broken = tmp_path / "broken.tar.gz"
    _write_tar(broken, members)
    with pytest.raises(BundleCorrupt) as info:
        verify_bundle(broken)
    text = str(info.value)
    assert "model.onnx: listed in the manifest but missing" in text
    assert "extra.bin: in the bundle but not listed" in text
    assert f"model.so: {len(LIBRARY) + 4} bytes, the manifest says {len(LIBRARY)}" in text


def test_verify_rejects_damaged_gzip_and_non_bundles(bundle: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(bundle.read_bytes()[: bundle.stat().st_size // 2])
    with pytest.raises(BundleCorrupt, match="damaged"):
        verify_bundle(truncated)
    plain = tmp_path / "plain.tar.gz"
    _write_tar(plain, {"readme.txt": b"hello"})
    with pytest.raises(BundleCorrupt, match=r"no manifest\.json"):
        verify_bundle(plain)
    with pytest.raises(InputError, match="no such bundle"):
        verify_bundle(tmp_path / "missing.tar.gz")


def test_verify_rejects_a_bundle_cut_after_its_last_member(bundle: Path, tmp_path: Path) -> None:
    # Every member is whole; only the gzip trailer (CRC and size) and the tar's end blocks are gone.
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(bundle.read_bytes()[:-8])
    with pytest.raises(BundleCorrupt, match="damaged"):
        verify_bundle(cut)


def _manifest_dict(bundle: Path) -> dict:
    return json.loads(_members(bundle)["manifest.json"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(schema="nasc.bundle/99"), "'schema'"),
        (lambda d: d.pop("inputs"), "key 'inputs': missing"),
        (lambda d: d.update(surprise=1), "key 'surprise': unknown key"),
        (lambda d: d["files"][0].update(sha256="XYZ"), "files[0]"),
        (lambda d: d["files"][0].update(path="../escape"), "files[0]"),
        (lambda d: d["inputs"][0].update(shape="1x3"), "inputs[0].shape"),
        (lambda d: d["latency"].update(emulated="no"), "latency.emulated"),
        (lambda d: d.update(accuracy=93.0), "accuracy"),
        (lambda d: d["sample"].update(inputs=[]), "sample"),
    ],
)
def test_manifest_schema_is_validated_on_read(bundle: Path, change, message: str) -> None:
    data = _manifest_dict(bundle)
    BundleManifest.from_dict(json.loads(json.dumps(data)))  # the original is valid
    change(data)
    with pytest.raises(BundleCorrupt) as info:
        BundleManifest.from_dict(data)
    assert message in str(info.value)


def test_manifest_round_trips(bundle: Path) -> None:
    data = _manifest_dict(bundle)
    manifest = BundleManifest.from_dict(data)
    assert manifest.schema == SCHEMA
    assert manifest.to_dict() == data
    assert BundleManifest.from_json(manifest.to_json()) == manifest


def test_extract_unpacks_a_verified_bundle(bundle: Path, tmp_path: Path) -> None:
    dest = tmp_path / "unpacked"
    extract_bundle(bundle, dest)
    assert (dest / "model.so").read_bytes() == LIBRARY
    assert (dest / "example" / "main.cc").is_file()
    with pytest.raises(InputError, match="already exists"):
        extract_bundle(bundle, dest)


def _evil_tar(path: Path, make) -> None:
    with tarfile.open(path, "w:gz") as tar:
        make(tar)


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"x", **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if info.isfile() else None)


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda t, n: _add(t, "../evil.txt"), "../evil.txt: unsafe path"),
        (lambda t, n: _add(t, "sample/../../evil.txt"), "unsafe path"),
        (lambda t, n: _add(t, "/tmp/evil.txt"), "/tmp/evil.txt: unsafe path"),
        (lambda t, n: _add(t, "link", b"", type=tarfile.SYMTYPE, linkname="../../etc/passwd"), "points outside"),
        (lambda t, n: _add(t, "hard", b"", type=tarfile.LNKTYPE, linkname="/etc/passwd"), "hard link"),
        (lambda t, n: _add(t, "dev", b"", type=tarfile.CHRTYPE, devmajor=1, devminor=3), "device or FIFO"),
        (lambda t, n: _add(t, "big.bin", b"y" * (n + 1)), "big.bin: oversized member"),
    ],
)
def test_unpacking_refuses_unsafe_members(bundle: Path, tmp_path: Path, make, needle: str) -> None:
    members = _members(bundle)
    limit = max(len(d) for d in members.values())  # every real member fits
    evil = tmp_path / "deep" / "evil.tar.gz"
    evil.parent.mkdir()

    def build(tar: tarfile.TarFile) -> None:
        make(tar, limit)
        for name, data in members.items():
            _add(tar, name, data)

    _evil_tar(evil, build)
    dest = tmp_path / "deep" / "out"
    with pytest.raises(BundleCorrupt) as info:
        extract_bundle(evil, dest, max_member_bytes=limit)
    assert needle in str(info.value)
    assert not dest.exists()
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "deep" / "evil.txt").exists()
    assert [p.name for p in (tmp_path / "deep").iterdir()] == ["evil.tar.gz"]  # no temp folder left
    extract_bundle(bundle, tmp_path / "good", max_member_bytes=limit)  # the same limit passes the real bundle


def test_package_refuses_a_bad_compile_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such folder"):
        package(tmp_path / "nothing", tmp_path / "b.tar.gz")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"compile.json: missing; run `nasc compile"):
        package(empty, tmp_path / "b.tar.gz")
    folder = write_compile_dir(tmp_path / "c", LIBRARY)
    (folder / "model.onnx").write_bytes((folder / "model.onnx").read_bytes() + b"\x00")
    with pytest.raises(InputError, match=r"model.onnx: sha256 .* compile.json's onnx_sha256"):
        package(folder, tmp_path / "b.tar.gz")
    folder = write_compile_dir(tmp_path / "e", LIBRARY, library_sha256="0" * 64)
    with pytest.raises(InputError, match=r"model.so: sha256 .* library_sha256 0000"):
        package(folder, tmp_path / "b.tar.gz")
    folder = write_compile_dir(tmp_path / "d", None)
    with pytest.raises(InputError, match=r"model.so: missing"):
        package(folder, tmp_path / "b.tar.gz")
    record = json.loads((folder / "compile.json").read_text())
    record["inputs"][0]["shape"] = [-1, 3, 8, 8]
    (folder / "model.so").write_bytes(LIBRARY)
    (folder / "compile.json").write_text(json.dumps(record))
    with pytest.raises(InputError, match=r"compile.json: not a valid compile record .*'input'.*negative dimension"):
        package(folder, tmp_path / "b.tar.gz")
    assert not (tmp_path / "b.tar.gz").exists()


def test_gzip_member_is_nameless(bundle: Path) -> None:
    with gzip.open(bundle) as gz:
        assert gz.read(1)
    assert bundle.read_bytes()[3] & 0x08 == 0  # FNAME flag unset

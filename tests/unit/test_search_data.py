"""Data sources (digits, Fashion-MNIST, .npz, image folder), max_train, fitting, seeded splits, clear errors."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from nasc.errors import InputError, ToolMissing
from nasc.search import data as data_module
from nasc.search.data import (
    FASHION_MNIST_DIR,
    FASHION_MNIST_ENV,
    FASHION_MNIST_FILES,
    check_source,
    count_classes,
    load_data,
)
from nasc.search.settings import DataSettings, SpaceSettings

RGB32 = SpaceSettings()
GREY16 = SpaceSettings(resolution=16, in_channels=1)


def test_digits_are_resized_to_the_space_and_split_by_seed() -> None:
    data = load_data(DataSettings(), RGB32, seed=0)
    assert data.train.x.shape[1:] == (3, 32, 32) and data.num_classes == 10
    sizes = (len(data.train), len(data.valid), len(data.test))
    assert sum(sizes) == 1797 and sizes[1] == sizes[2] == round(1797 * 0.2)
    assert abs(float(data.train.x.mean())) < 1e-3  # normalised with the training split's statistics
    torch.testing.assert_close(data.train.x[:, 0], data.train.x[:, 2])  # grey copied to three channels
    again = load_data(DataSettings(), RGB32, seed=0)
    assert torch.equal(again.test.y, data.test.y) and torch.equal(again.train.x, data.train.x)
    other = load_data(DataSettings(), RGB32, seed=1)
    assert not torch.equal(other.test.y, data.test.y)


def _images_differ_between_splits(data: object) -> bool:
    rows = {tuple(x.flatten().tolist()) for x in data.train.x}  # type: ignore[attr-defined]
    return not any(tuple(x.flatten().tolist()) in rows for x in data.test.x)  # type: ignore[attr-defined]


def test_npz_nhwc_uint8_with_string_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(40, 12, 12, 3), dtype=np.uint8)
    y = np.array(["cat", "dog"] * 20)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data = load_data(DataSettings(source="d.npz"), GREY16, seed=3, base_dir=tmp_path)
    assert data.class_names == ("cat", "dog")
    assert data.train.x.shape[1:] == (1, 16, 16)
    assert len(data.train) + len(data.valid) + len(data.test) == 40
    assert _images_differ_between_splits(data)
    assert count_classes(DataSettings(source="d.npz"), GREY16, tmp_path) == 2


def test_image_folder_tree(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    for cls in ("circle", "square", "triangle"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(6):
            image = Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
            image.save(tmp_path / "imgs" / cls / f"{i}.png")
    data = load_data(DataSettings(source=str(tmp_path / "imgs")), RGB32, seed=0)
    assert data.class_names == ("circle", "square", "triangle")
    assert data.train.x.shape[1:] == (3, 32, 32)
    assert sorted(torch.cat([data.train.y, data.valid.y, data.test.y]).tolist()) == [0] * 6 + [1] * 6 + [2] * 6
    assert count_classes(DataSettings(source=str(tmp_path / "imgs")), RGB32) == 3


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((10, 8, 8)), "labels": np.zeros(10)}, "no array 'y'"),
        ({"x": np.zeros((10, 8, 8)), "y": np.zeros(9, dtype=int)}, "10 images but 'y' holds 9"),
        ({"x": np.zeros((10, 8, 8, 5)), "y": np.zeros(10, dtype=int)}, r"shape \(10, 8, 8, 5\)"),
        ({"x": np.zeros((10, 64)), "y": np.zeros(10, dtype=int)}, r"shape \(10, 64\)"),
        ({"x": np.zeros((10, 8, 8)), "y": np.zeros((10, 2), dtype=int)}, "one label per image"),
    ],
)
def test_bad_npz_is_a_clear_error_naming_the_file(tmp_path: Path, arrays: dict, message: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(InputError, match=rf"bad\.npz.*{message}"):
        load_data(DataSettings(source=str(tmp_path / "bad.npz")), GREY16, seed=0)


def test_missing_source_and_bad_folder_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nowhere\.npz does not exist; use 'digits'"):
        load_data(DataSettings(source="nowhere.npz"), GREY16, seed=0, base_dir=tmp_path)
    (tmp_path / "flat").mkdir()
    with pytest.raises(InputError, match="one sub-folder per class"):
        load_data(DataSettings(source=str(tmp_path / "flat")), GREY16, seed=0)
    (tmp_path / "d" / "a").mkdir(parents=True)
    (tmp_path / "d" / "b").mkdir(parents=True)
    (tmp_path / "d" / "a" / "x.png").write_bytes(b"not an image")
    (tmp_path / "d" / "b" / "y.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match=r"x\.png: not a readable image"):
        load_data(DataSettings(source=str(tmp_path / "d")), GREY16, seed=0)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="neither a folder"):
        load_data(DataSettings(source="notes.txt"), GREY16, seed=0, base_dir=tmp_path)


# --- Fashion-MNIST (Debian's dataset-fashion-mnist) -------------------------------------------------------------

FASHION = DataSettings(source="fashion-mnist")
GREY28 = SpaceSettings(resolution=28, in_channels=1)  # the files' own size: no resize, fast
GREY6 = SpaceSettings(resolution=6, in_channels=1)


def _official(name: str) -> np.ndarray:
    """An installed idx file read the plain way (gzip or not, fixed header length) to check the reader against."""
    stem = FASHION_MNIST_DIR / name
    path = stem.with_name(stem.name + ".gz") if stem.with_name(stem.name + ".gz").is_file() else stem
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return np.frombuffer(raw, dtype=np.uint8, offset=16 if "idx3" in name else 8)


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FASHION_MNIST_ENV, raising=False)
    if not all(any((FASHION_MNIST_DIR / f"{stem}{gz}").is_file() for gz in ("", ".gz"))
               for stem in FASHION_MNIST_FILES.values()):
        pytest.fail(f"dataset-fashion-mnist is not installed ({FASHION_MNIST_DIR}): run scripts/setup.sh, "
                    "which installs it with the other system packages")


@pytest.mark.usefixtures("installed")
def test_fashion_mnist_reads_the_installed_files_and_keeps_the_official_test_split() -> None:
    data = load_data(FASHION, GREY28, seed=0)
    assert data.class_names == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    assert (len(data.train), len(data.valid), len(data.test)) == (48000, 12000, 10000)  # valid: 20% of 60,000
    assert data.train.x.shape[1:] == data.test.x.shape[1:] == (1, 28, 28)
    assert data.preprocessing()["scale"] == "pixel values to [0, 1] (uint8 / 255)"
    for split in (data.train, data.valid, data.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert int(split.y.min()) >= 0 and int(split.y.max()) <= 9
    # the test split is the 10,000 official test images, in file order
    assert torch.equal(data.test.y, torch.from_numpy(_official("t10k-labels-idx1-ubyte").astype(np.int64)))
    pixels = torch.from_numpy(_official("t10k-images-idx3-ubyte").reshape(10000, 1, 28, 28).astype(np.float32))
    torch.testing.assert_close(data.test.x * data.std[0] + data.mean[0], pixels / 255, atol=1e-5, rtol=0)
    # train + valid are the 60,000 official training images
    official = np.bincount(_official("train-labels-idx1-ubyte"), minlength=10)
    assert np.array_equal(np.bincount(torch.cat([data.train.y, data.valid.y]).numpy(), minlength=10), official)
    assert abs(float(data.train.x.mean())) < 1e-3  # normalised with the training split's statistics
    # deterministic by seed; another seed draws another valid split, never another test split
    # (max_train only trims the training split, and keeps these loads fast; the next test checks its determinism)
    again = load_data(DataSettings(source="fashion-mnist", max_train=100), GREY28, seed=0)
    assert torch.equal(again.valid.y, data.valid.y)
    torch.testing.assert_close(again.valid.x * again.std[0] + again.mean[0], data.valid.x * data.std[0] + data.mean[0],
                               atol=1e-5, rtol=0)
    other = load_data(DataSettings(source="fashion-mnist", max_train=100), GREY28, seed=1)
    assert not torch.equal(other.valid.y, data.valid.y) and torch.equal(other.test.y, data.test.y)


@pytest.mark.usefixtures("installed")
def test_fashion_mnist_max_train_at_the_default_space_is_stratified_and_seeded() -> None:
    settings = DataSettings(source="fashion-mnist", max_train=1000)
    data = load_data(settings, RGB32, seed=0)
    assert (len(data.train), len(data.valid), len(data.test)) == (1000, 12000, 10000)  # valid and test untouched
    assert data.train.x.shape[1:] == data.test.x.shape[1:] == (3, 32, 32)
    kept = torch.bincount(data.train.y, minlength=10)
    assert int(kept.sum()) == 1000 and int(kept.min()) >= 95 and int(kept.max()) <= 105  # about 4,800 a class
    torch.testing.assert_close(data.train.x[:, 0], data.train.x[:, 2])  # grey seen by three channels
    assert len(data.mean) == len(data.std) == 3 and data.preprocessing()["size"] == [3, 32, 32]
    assert torch.equal(load_data(settings, RGB32, seed=0).train.x, data.train.x)
    assert not torch.equal(load_data(settings, RGB32, seed=2).train.x, data.train.x)


def test_count_classes_for_fashion_mnist_reads_no_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_fashion(tmp_path)
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))

    def no_reading(*args: object) -> None:
        raise AssertionError("count_classes read an idx file")

    monkeypatch.setattr(data_module, "_read_idx", no_reading)
    assert count_classes(FASHION, RGB32) == 10


def test_max_train_keeps_classes_in_proportion(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1, 2, 3], [60, 30, 15, 5])
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 256, size=(len(y), 6, 6), dtype=np.uint8), y=y)
    full = load_data(DataSettings(source="d.npz"), GREY6, seed=4, base_dir=tmp_path)
    part = load_data(DataSettings(source="d.npz", max_train=20), GREY6, seed=4, base_dir=tmp_path)
    counts, kept = torch.bincount(full.train.y, minlength=4), torch.bincount(part.train.y, minlength=4)
    assert int(kept.sum()) == 20 and int(kept.min()) >= 1
    assert torch.all((kept - counts * 20 / len(full.train)).abs() <= 1)
    assert torch.equal(part.valid.y, full.valid.y) and torch.equal(part.test.y, full.test.y)

    def pixels(split: object, data: object) -> list[tuple[float, ...]]:
        x = split.x * data.std[0] + data.mean[0]  # type: ignore[attr-defined]  (no resize: whole pixel values)
        return [tuple(row.tolist()) for row in (x * 255).round().flatten(1)]

    assert set(pixels(part.train, part)) <= set(pixels(full.train, full))  # a subset of the full training split
    everything = load_data(DataSettings(source="d.npz", max_train=10_000), GREY6, seed=4, base_dir=tmp_path)
    assert torch.equal(everything.train.y, full.train.y)
    with pytest.raises(InputError, match="max_train = 3 is less than the 4 classes"):
        load_data(DataSettings(source="d.npz", max_train=3), GREY6, seed=4, base_dir=tmp_path)


def test_max_train_in_build_toml_is_typed() -> None:
    from nasc.errors import ConfigError
    from nasc.pipeline.config import parse_config

    config = parse_config('[data]\nsource = "fashion-mnist"\nmax_train = 5000\n', "build.toml")
    assert config.data.max_train == 5000 and config.data.source == "fashion-mnist"
    assert parse_config("[data]\n", "build.toml").data.max_train == 0
    for text, message in [('max_train = "5000"', "expected an integer"), ("max_train = 5000.0", "expected an integer"),
                          ("max_train = -1", "max_train must be >= 0"), ("max_trian = 10", "unknown key")]:
        with pytest.raises(ConfigError, match=rf"build\.toml: key 'data.*{message}"):
            parse_config(f"[data]\n{text}\n", "build.toml")


def _idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _write_fashion(folder: Path, n_train: int = 40, n_test: int = 20, gz: bool = True) -> None:
    """Small synthetic idx files under the official names (gzip-compressed or not)."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 6, 6), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 6, 6), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for name, array in arrays.items():
        raw = _idx(array)
        (folder / (f"{name}.gz" if gz else name)).write_bytes(gzip.compress(raw) if gz else raw)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_folder_override_reads_gzip_or_plain_idx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               gz: bool) -> None:
    _write_fashion(tmp_path, gz=gz)
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    data = load_data(FASHION, GREY16, seed=0)
    assert (len(data.train), len(data.valid), len(data.test)) == (32, 8, 20)
    assert data.test.y.tolist() == [i % 10 for i in range(20)]


def test_missing_fashion_mnist_names_the_apt_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))  # an empty folder
    for call in (lambda: load_data(FASHION, RGB32, seed=0), lambda: count_classes(FASHION, RGB32)):
        with pytest.raises(InputError, match=r"lacks train-images-idx3-ubyte\[\.gz\].*NASC_FASHION_MNIST_DIR"
                                             r".*apt-get install dataset-fashion-mnist"):
            call()
    monkeypatch.delenv(FASHION_MNIST_ENV)
    monkeypatch.setattr(data_module, "FASHION_MNIST_DIR", tmp_path / "not-installed")
    with pytest.raises(ToolMissing, match=r"apt-get install dataset-fashion-mnist.*NASC_FASHION_MNIST_DIR"):
        load_data(FASHION, RGB32, seed=0)


@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [
        ("t10k-images-idx3-ubyte", lambda raw: raw[:-7], "truncated idx file: it holds 713 of the 720 data bytes"),
        ("train-labels-idx1-ubyte", lambda raw: raw[:6], "truncated idx file"),
        ("train-images-idx3-ubyte", lambda raw: raw + b"\0", "corrupt idx file"),
        ("train-labels-idx1-ubyte", lambda raw: b"\1\2\3\4" + raw[4:], "not an idx file"),
        ("train-labels-idx1-ubyte", lambda raw: raw[:-1] + b"\x0b", r"labels range 0\.\.11"),
        ("t10k-labels-idx1-ubyte", lambda raw: raw[:-1], "truncated idx file"),
    ],
)
def test_damaged_idx_file_is_an_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str,
                                                damage: object, message: str) -> None:
    _write_fashion(tmp_path, gz=False)
    (tmp_path / name).write_bytes(damage((tmp_path / name).read_bytes()))  # type: ignore[operator]
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    with pytest.raises(InputError, match=rf"{name}.*{message}"):
        load_data(FASHION, GREY16, seed=0)


def test_truncated_gzip_idx_file_is_an_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_fashion(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-30])
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    with pytest.raises(InputError, match=r"train-images-idx3-ubyte\.gz: not a readable idx file"):
        load_data(FASHION, GREY16, seed=0)


def test_check_source_refuses_unreadable_sources_without_reading_images(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    check_source(DataSettings(), RGB32, tmp_path)
    _write_fashion(tmp_path)
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    monkeypatch.setattr(data_module, "_read_idx", lambda *args: pytest.fail("check_source read an idx file"))
    check_source(FASHION, RGB32)
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path / "empty"))
    with pytest.raises(InputError, match="apt-get install dataset-fashion-mnist"):
        check_source(FASHION, RGB32)
    with pytest.raises(InputError, match=r"nowhere\.npz does not exist"):
        check_source(DataSettings(source="nowhere.npz"), RGB32, tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="neither a folder"):
        check_source(DataSettings(source="notes.txt"), RGB32, tmp_path)
    (tmp_path / "flat" / "only").mkdir(parents=True)
    with pytest.raises(InputError, match="one sub-folder per class"):
        check_source(DataSettings(source="flat"), RGB32, tmp_path)

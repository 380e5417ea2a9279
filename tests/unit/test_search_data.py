"""Data sources (digits, .npz, image folder), fitting to the space, seeded splits, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nasc.errors import InputError
from nasc.search.data import count_classes, load_data
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

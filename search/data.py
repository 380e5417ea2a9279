"""Training data: scikit-learn's digits (shipped, no download), an image-folder tree or an .npz with x/y.

Images are resized to the space's resolution, given the channel count the stem expects,
normalised with the training split's per-channel mean and std, and split train / valid / test
by a seeded permutation (the same seed always gives the same split).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nasc.errors import InputError, ToolMissing

from .settings import DataSettings, SpaceSettings

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Split:
    """Images (N, C, H, W float32, normalised) and labels (N, int64)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class Dataset:
    """The three splits and what a deployment needs to preprocess inputs the same way."""

    train: Split
    valid: Split
    test: Split
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def preprocessing(self) -> dict[str, Any]:
        """How raw images become network inputs (for the bundle manifest)."""
        return {
            "layout": "NCHW",
            "size": list(self.train.x.shape[1:]),
            "scale": "pixel values to [0, 1] (uint8 / 255; digits / 16)",
            "mean": list(self.mean),
            "std": list(self.std),
            "class_names": list(self.class_names),
        }


def _digits() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32)[:, None] / 16.0  # (N, 1, 8, 8) in [0, 1]
    return images, bunch.target.astype(np.int64), tuple(str(c) for c in range(10))


def _labels(raw: np.ndarray, where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    if raw.ndim != 1:
        raise InputError(f"{where}: 'y' must be one label per image (shape (N,)), got shape {raw.shape}")
    if raw.dtype.kind not in "iuUSb":
        raise InputError(f"{where}: 'y' must hold integer or string labels, got dtype {raw.dtype}")
    names, index = np.unique(raw, return_inverse=True)
    return index.astype(np.int64), tuple(str(n) for n in names)


def _to_float_images(x: np.ndarray, where: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
            pass  # NCHW
        elif x.shape[-1] in (1, 3):
            x = np.transpose(x, (0, 3, 1, 2))  # NHWC
        else:
            raise InputError(
                f"{where}: 'x' has shape {x.shape}; expected (N, H, W), (N, H, W, C) or (N, C, H, W) with C 1 or 3"
            )
    else:
        raise InputError(f"{where}: 'x' has shape {x.shape}; expected (N, H, W), (N, H, W, C) or (N, C, H, W)")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    if x.dtype.kind == "f":
        return x.astype(np.float32)
    raise InputError(f"{where}: 'x' must be uint8 (0..255) or float images, got dtype {x.dtype}")


def _npz(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in ("x", "y") if k not in archive.files]
            if missing:
                raise InputError(
                    f"{path}: no array {missing[0]!r} (found {archive.files}); "
                    "save with np.savez(path, x=images, y=labels)"
                )
            x, y = archive["x"], archive["y"]
    except (OSError, ValueError) as exc:
        raise InputError(
            f"{path}: not a readable .npz archive ({exc}); save with np.savez(path, x=images, y=labels)"
        ) from None
    if len(x) != len(y):
        raise InputError(f"{path}: 'x' holds {len(x)} images but 'y' holds {len(y)} labels")
    labels, names = _labels(y, str(path))
    return _to_float_images(x, str(path)), labels, names


def _image_folder(root: Path, channels: int, resolution: int) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ToolMissing("reading an image folder needs Pillow; install it with: pip install pillow") from None
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise InputError(f"{root}: an image folder needs one sub-folder per class (at least 2), found {len(classes)}")
    images: list[np.ndarray] = []
    labels: list[int] = []
    mode = "L" if channels == 1 else "RGB"
    for label, folder in enumerate(classes):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"{folder}: class folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        for file in files:
            try:
                with Image.open(file) as img:
                    img = img.convert(mode).resize((resolution, resolution), Image.Resampling.BILINEAR)
                    array = np.asarray(img, dtype=np.float32) / 255.0
            except (UnidentifiedImageError, OSError) as exc:
                raise InputError(f"{file}: not a readable image ({exc}); remove it or convert it to PNG") from None
            images.append(array[None] if array.ndim == 2 else np.transpose(array, (2, 0, 1)))
            labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64), tuple(p.name for p in classes)


def _read(source: str, base_dir: Path, space: SpaceSettings) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    if source == "digits":
        return _digits()
    path = Path(source).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if not path.exists():
        raise InputError(
            f"[data] source: {path} does not exist; use 'digits', a folder with one sub-folder per class, "
            "or an .npz file with arrays x and y"
        )
    if path.is_dir():
        return _image_folder(path, space.in_channels, space.resolution)
    if path.suffix == ".npz":
        return _npz(path)
    raise InputError(f"[data] source: {path} is neither a folder of class folders nor an .npz file")


def _fit(images: np.ndarray, space: SpaceSettings) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images))
    if x.shape[1] != space.in_channels:
        if x.shape[1] == 1:
            x = x.expand(-1, space.in_channels, -1, -1)
        else:  # RGB to grey, ITU-R 601 luma
            x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    if tuple(x.shape[2:]) != (space.resolution, space.resolution):
        x = F.interpolate(x, size=(space.resolution, space.resolution), mode="bilinear", align_corners=False,
                          antialias=x.shape[2] > space.resolution)
    return x.contiguous().float()


def load_data(settings: DataSettings, space: SpaceSettings, seed: int, base_dir: str | Path = ".") -> Dataset:
    """Read `settings.source`, fit it to `space`, split it by `seed`, normalise with the training split's stats."""
    images, labels, names = _read(settings.source, Path(base_dir), space)
    n = len(labels)
    n_valid, n_test = round(n * settings.valid_fraction), round(n * settings.test_fraction)
    if min(n_valid, n_test, n - n_valid - n_test) < 1 or n < 2 * len(names):
        raise InputError(f"[data] source {settings.source}: {n} images are too few to split train/valid/test")
    x = _fit(images, space)
    y = torch.from_numpy(labels)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    test_idx, valid_idx, train_idx = order[:n_test], order[n_test : n_test + n_valid], order[n_test + n_valid :]
    train_x = x[train_idx]
    mean = train_x.mean(dim=(0, 2, 3))
    std = train_x.std(dim=(0, 2, 3)).clamp_min(1e-6)

    def split(idx: torch.Tensor) -> Split:
        return Split(((x[idx] - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)).contiguous(), y[idx].clone())

    return Dataset(
        train=split(train_idx), valid=split(valid_idx), test=split(test_idx), class_names=names,
        mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std), source=settings.source,
    )


def count_classes(settings: DataSettings, space: SpaceSettings, base_dir: str | Path = ".") -> int:
    """How many classes the data source holds (cheap for folders; reads the data otherwise)."""
    if settings.source != "digits":
        path = Path(settings.source).expanduser()
        path = path if path.is_absolute() else Path(base_dir) / path
        if path.is_dir():
            return sum(1 for p in path.iterdir() if p.is_dir())
    return len(_read(settings.source, Path(base_dir), space)[2])

"""Training data: scikit-learn's digits (shipped, no download), Fashion-MNIST (Debian's
dataset-fashion-mnist package), an image-folder tree or an .npz with x/y.

Images are resized to the space's resolution, given the channel count the stem expects,
normalised with the training split's per-channel mean and std, and split train / valid / test
by a seeded permutation (the same seed always gives the same split). A source with its own test
split (Fashion-MNIST) keeps it: the seeded permutation then only carves valid out of its training
images. The split is made before images are converted to float and fitted, split by split in chunks,
and grey images fed to a three-channel stem stay one channel in memory (a stride-0 view), so a large
source costs little more than its fitted training split.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nasc.errors import InputError, ToolMissing

from .settings import DataSettings, SpaceSettings

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff", ".webp")

FASHION_MNIST = "fashion-mnist"
# Where Debian's dataset-fashion-mnist puts the idx files (`dpkg -L dataset-fashion-mnist`).
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_ENV = "NASC_FASHION_MNIST_DIR"  # a folder with the four idx files on other systems
FASHION_MNIST_APT = "sudo apt-get install dataset-fashion-mnist"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FASHION_MNIST_FILES = {  # each as STEM or STEM.gz
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# idx type byte -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT")
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

SCALE_UINT8 = "pixel values to [0, 1] (uint8 / 255)"
FIT_CHUNK = 512  # images converted to float and resized at a time (small: freed chunks get reused)


@dataclass(frozen=True)
class Split:
    """Images (N, C, H, W float32, normalised) and labels (N, int64).

    Grey images fed to a three-channel stem are a stride-0 view over one channel: read them, index
    them, never write to them in place.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def fixed_subset(self, count: int, seed: int) -> Split:
        """The split itself (`count` 0, or at least its size), or `count` of its images drawn with `seed`
        on a generator of their own: a scoring subset that stays fixed and never changes a run's draws."""
        if count == 0 or count >= len(self):
            return self
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:count]
        return Split(self.x[order], self.y[order])


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
    scale: str = SCALE_UINT8  # how the source's raw pixels became [0, 1] values, in words

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def preprocessing(self) -> dict[str, Any]:
        """How raw images become network inputs (for the bundle manifest)."""
        return {
            "layout": "NCHW",
            "size": list(self.train.x.shape[1:]),
            "scale": self.scale,
            "mean": list(self.mean),
            "std": list(self.std),
            "class_names": list(self.class_names),
        }


@dataclass(frozen=True)
class _Raw:
    """A source as read: images (N, C, H, W), uint8 (scaled by 1/255 when fitted) or float32 in [0, 1]."""

    images: np.ndarray
    labels: np.ndarray
    names: tuple[str, ...]
    scale: str
    test: tuple[np.ndarray, np.ndarray] | None = None  # the source's own test split (images, labels)


def _digits() -> _Raw:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32)[:, None] / 16.0  # (N, 1, 8, 8) in [0, 1]
    return _Raw(images, bunch.target.astype(np.int64), tuple(str(c) for c in range(10)),
                "pixel values to [0, 1] (digits' 0..16 / 16)")


def _fashion_files() -> dict[str, Path]:
    """The four idx files, from $NASC_FASHION_MNIST_DIR or Debian's install path; a clear error if absent."""
    override = os.environ.get(FASHION_MNIST_ENV)
    root = Path(override).expanduser() if override else FASHION_MNIST_DIR
    found: dict[str, Path] = {}
    missing: list[str] = []
    for key, stem in FASHION_MNIST_FILES.items():
        for name in (f"{stem}.gz", stem):
            if (root / name).is_file():
                found[key] = root / name
                break
        else:
            missing.append(f"{stem}[.gz]")
    if not missing:
        return found
    lacks = f"{root} lacks {', '.join(missing)}"
    if override:
        raise InputError(
            f"[data] source '{FASHION_MNIST}': {lacks} (${FASHION_MNIST_ENV} points there); point "
            f"{FASHION_MNIST_ENV} at a folder holding the four Fashion-MNIST idx files (gzip-compressed or not), "
            f"or unset it to use Debian's package ({FASHION_MNIST_APT}, files in {FASHION_MNIST_DIR})"
        )
    raise ToolMissing(
        f"[data] source '{FASHION_MNIST}': {lacks}; install Debian's package with: {FASHION_MNIST_APT} "
        f"(elsewhere, set {FASHION_MNIST_ENV} to a folder holding the four idx files, gzip-compressed or not)"
    )


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An idx file (gzip-compressed or not), streamed into one array; InputError naming `path` if it is not one."""
    fix = f"reinstall the data ({FASHION_MNIST_APT} --reinstall) or replace the file"
    try:
        with path.open("rb") as probe:
            compressed = probe.read(2) == b"\x1f\x8b"
        with (gzip.open(path, "rb") if compressed else path.open("rb")) as stream:
            head = stream.read(4)
            if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in IDX_TYPES:
                raise InputError(f"{path}: not an idx file (magic {head.hex() or 'missing'}); {fix}")
            if head[3] != ndim:
                raise InputError(f"{path}: holds a {head[3]}-dimensional idx array, expected {ndim} dimensions; {fix}")
            shape = stream.read(4 * ndim)
            if len(shape) < 4 * ndim:
                raise InputError(f"{path}: truncated idx file (it ends inside its header); {fix}")
            dims = struct.unpack(f">{ndim}I", shape)
            array = np.empty(dims, dtype=np.dtype(IDX_TYPES[head[2]]))
            view, got = memoryview(array.reshape(-1).view(np.uint8)), 0
            while got < len(view) and (n := stream.readinto(view[got:])):
                got += n
            extra = stream.read(1)
    except (OSError, EOFError, zlib.error) as exc:  # unreadable, or a truncated or corrupt gzip stream
        raise InputError(f"{path}: not a readable idx file ({exc}); {fix}") from None
    if got < len(view) or extra:
        what = f"truncated idx file: it holds {got} of the" if got < len(view) else "corrupt idx file: more than the"
        raise InputError(f"{path}: {what} {len(view)} data bytes its header promises (shape {list(dims)}); {fix}")
    return array


def _fashion_split(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    x, y = _read_idx(images, 3), _read_idx(labels, 1)
    if x.dtype != np.uint8:
        raise InputError(f"{images}: idx images must be unsigned bytes (type 0x08), got {x.dtype}")
    if y.dtype.kind not in "iu":
        raise InputError(f"{labels}: idx labels must be integers, got {y.dtype}")
    if len(x) != len(y):
        raise InputError(f"{images} holds {len(x)} images but {labels} holds {len(y)} labels")
    if len(y) and not 0 <= int(y.min()) <= int(y.max()) < len(FASHION_MNIST_CLASSES):
        raise InputError(f"{labels}: labels range {int(y.min())}..{int(y.max())}, expected 0..9")
    return x[:, None], y.astype(np.int64)  # (N, 1, H, W) uint8 view, no copy


def _fashion_mnist() -> _Raw:
    files = _fashion_files()
    train = _fashion_split(files["train_images"], files["train_labels"])
    test = _fashion_split(files["test_images"], files["test_labels"])
    if train[0].shape[1:] != test[0].shape[1:]:
        raise InputError(f"{files['test_images']}: images of {test[0].shape[2:]} pixels, "
                         f"but {files['train_images']} holds {train[0].shape[2:]}")
    return _Raw(train[0], train[1], FASHION_MNIST_CLASSES, SCALE_UINT8, test=test)


def _labels(raw: np.ndarray, where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    if raw.ndim != 1:
        raise InputError(f"{where}: 'y' must be one label per image (shape (N,)), got shape {raw.shape}")
    if raw.dtype.kind not in "iuUSb":
        raise InputError(f"{where}: 'y' must hold integer or string labels, got dtype {raw.dtype}")
    names, index = np.unique(raw, return_inverse=True)
    return index.astype(np.int64), tuple(str(n) for n in names)


def _nchw_images(x: np.ndarray, where: str) -> tuple[np.ndarray, str]:
    """NCHW images kept uint8 (fitting scales them by 1/255) or float32, and how they are scaled."""
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
        return x, SCALE_UINT8
    if x.dtype.kind == "f":
        return x.astype(np.float32), "float pixel values as stored in the .npz (not rescaled)"
    raise InputError(f"{where}: 'x' must be uint8 (0..255) or float images, got dtype {x.dtype}")


def _npz(path: Path) -> _Raw:
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
    images, scale = _nchw_images(x, str(path))
    return _Raw(images, labels, names, scale)


def _image_folder(root: Path, channels: int, resolution: int) -> _Raw:
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
    return _Raw(np.stack(images), np.asarray(labels, dtype=np.int64), tuple(p.name for p in classes),
                f"{SCALE_UINT8}, after a bilinear resize to {resolution}x{resolution} with Pillow")


def _source_path(source: str, base_dir: Path) -> Path:
    path = Path(source).expanduser()
    return path if path.is_absolute() else base_dir / path


def _checked_path(source: str, base_dir: Path) -> Path:
    """A path source resolved against `base_dir`: an existing folder or .npz file, else a clear InputError."""
    path = _source_path(source, base_dir)
    if not path.exists():
        raise InputError(
            f"[data] source: {path} does not exist; use 'digits', '{FASHION_MNIST}', a folder with one sub-folder "
            "per class, or an .npz file with arrays x and y"
        )
    if not path.is_dir() and path.suffix != ".npz":
        raise InputError(f"[data] source: {path} is neither a folder of class folders nor an .npz file")
    return path


def _read(source: str, base_dir: Path, space: SpaceSettings) -> _Raw:
    if source == "digits":
        return _digits()
    if source == FASHION_MNIST:
        return _fashion_mnist()
    path = _checked_path(source, base_dir)
    return _image_folder(path, space.in_channels, space.resolution) if path.is_dir() else _npz(path)


def _fit(images: np.ndarray, idx: np.ndarray, space: SpaceSettings) -> torch.Tensor:
    """images[idx] as float32 at the space's resolution, FIT_CHUNK images at a time. Grey stays one
    channel (expanded once normalised); colour becomes grey (ITU-R 601 luma) for a one-channel stem."""
    channels = 1 if images.shape[1] == 1 or space.in_channels == 1 else 3
    size = (space.resolution, space.resolution)
    out = torch.empty((len(idx), channels, *size), dtype=torch.float32)
    for start in range(0, len(idx), FIT_CHUNK):
        chunk = images[idx[start : start + FIT_CHUNK]]
        chunk = chunk.astype(np.float32) / np.float32(255) if chunk.dtype == np.uint8 else chunk.astype(np.float32)
        x = torch.from_numpy(chunk)
        if x.shape[1] != channels:  # RGB to grey, ITU-R 601 luma
            x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        if tuple(x.shape[2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=x.shape[2] > size[0])
        out[start : start + len(chunk)] = x
    return out


def _stratified(train_idx: np.ndarray, labels: np.ndarray, keep: int, source: str) -> np.ndarray:
    """The first images of each class in the (seeded, shuffled) `train_idx`, `keep` in all, classes kept in
    proportion (largest remainders; every class keeps at least one image)."""
    y = labels[train_idx]
    classes, counts = np.unique(y, return_counts=True)
    if keep < len(classes):
        raise InputError(f"[data] max_train = {keep} is less than the {len(classes)} classes of {source}; "
                         f"keep at least one image per class (or 0 for all)")
    quota = counts * keep / len(y)
    take = np.maximum(np.floor(quota).astype(np.int64), 1)
    while take.sum() > keep:  # the at-least-one rule overshot: trim the largest classes
        take[np.argmax(take)] -= 1
    spare = (quota - np.floor(quota)) * (take < counts)
    for c in np.argsort(-spare, kind="stable")[: keep - int(take.sum())]:
        take[c] += 1
    rank = np.empty(len(y), dtype=np.int64)  # position of each image among its class, in train_idx order
    for c, label in enumerate(classes):
        members = np.flatnonzero(y == label)
        rank[members] = np.arange(len(members))
        rank[members[take[c] :]] = -1
    return train_idx[rank >= 0]


def load_data(settings: DataSettings, space: SpaceSettings, seed: int, base_dir: str | Path = ".") -> Dataset:
    """Read `settings.source`, split it by `seed`, fit it to `space`, normalise with the training split's stats."""
    raw = _read(settings.source, Path(base_dir), space)
    n, names = len(raw.labels), raw.names
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    n_valid = round(n * settings.valid_fraction)
    if raw.test is None:
        n_test = round(n * settings.test_fraction)
        test_idx, valid_idx, train_idx = order[:n_test], order[n_test : n_test + n_valid], order[n_test + n_valid :]
    else:  # the source's own test split; valid comes out of its training images
        n_test = len(raw.test[1])
        valid_idx, train_idx = order[:n_valid], order[n_valid:]
    if min(n_valid, n_test, len(train_idx)) < 1 or n < 2 * len(names):
        raise InputError(f"[data] source {settings.source}: {n} images are too few to split train/valid/test")
    if 0 < settings.max_train < len(train_idx):
        train_idx = _stratified(train_idx, raw.labels, settings.max_train, settings.source)

    train_x = _fit(raw.images, train_idx, space)
    mean = train_x.mean(dim=(0, 2, 3))
    std = train_x.std(dim=(0, 2, 3)).clamp_min(1e-6)

    def split(x: torch.Tensor, labels: np.ndarray) -> Split:
        x = x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))
        if x.shape[1] != space.in_channels:  # grey for a three-channel stem: one channel, seen three times
            x = x.expand(-1, space.in_channels, -1, -1)
        return Split(x, torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)))

    train = split(train_x, raw.labels[train_idx])
    valid = split(_fit(raw.images, valid_idx, space), raw.labels[valid_idx])
    if raw.test is None:
        test = split(_fit(raw.images, test_idx, space), raw.labels[test_idx])
    else:
        test = split(_fit(raw.test[0], np.arange(n_test), space), raw.test[1])
    repeat = space.in_channels // len(mean)
    return Dataset(
        train=train, valid=valid, test=test, class_names=names,
        mean=tuple(float(v) for v in mean) * repeat, std=tuple(float(v) for v in std) * repeat,
        source=settings.source, scale=raw.scale,
    )


def count_classes(settings: DataSettings, space: SpaceSettings, base_dir: str | Path = ".") -> int:
    """How many classes the data source holds (cheap for folders and Fashion-MNIST; reads the data otherwise)."""
    if settings.source == FASHION_MNIST:
        _fashion_files()  # a missing package fails here, before any search or measurement
        return len(FASHION_MNIST_CLASSES)
    if settings.source != "digits":
        path = _source_path(settings.source, Path(base_dir))
        if path.is_dir():
            return sum(1 for p in path.iterdir() if p.is_dir())
    return len(_read(settings.source, Path(base_dir), space).names)


def check_source(settings: DataSettings, space: SpaceSettings, base_dir: str | Path = ".") -> None:
    """Refuse a [data] source that cannot be read, without reading its images (a pipeline's first-second checks):
    Fashion-MNIST's four idx files present, a path source an existing .npz file or a folder of class folders."""
    del space  # the same signature as count_classes and load_data; fitting is checked when the data is read
    if settings.source == "digits":
        return
    if settings.source == FASHION_MNIST:
        _fashion_files()
        return
    path = _checked_path(settings.source, Path(base_dir))
    if path.is_dir() and sum(1 for p in path.iterdir() if p.is_dir()) < 2:
        raise InputError(f"{path}: an image folder needs one sub-folder per class (at least 2)")

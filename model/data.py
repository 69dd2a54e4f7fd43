"""MNIST on disk: IDX and Kaggle-style CSV loaders, checksums, splits and shift augmentation."""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.paths import MNIST_DIR
from model.spec import N_PIXELS, SIDE

# MD5 of each file's uncompressed content, as published with the original files.
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
IMAGE_MAGIC, LABEL_MAGIC = 0x00000803, 0x00000801


class DataError(ValueError):
    """A data file is missing, damaged or not what it claims to be."""


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"{path}: damaged gzip stream ({e})") from None
    return raw


def _expected_md5(path: Path) -> str | None:
    name = path.name.removesuffix(".gz")
    return MNIST_MD5.get(name)


def read_idx(path: str | os.PathLike, *, verify: bool = True) -> np.ndarray:
    """Read an IDX file (gzipped or raw) of unsigned bytes: images (n, 28, 28) or labels (n,).

    With `verify`, a file named like one of MNIST's four must match its published MD5.
    """
    path = Path(path)
    raw = _read_bytes(path)
    expected = _expected_md5(path) if verify else None
    if expected is not None:
        actual = hashlib.md5(raw).hexdigest()
        if actual != expected:
            raise DataError(f"{path}: checksum mismatch (MD5 of content {actual}, expected {expected})")
    if len(raw) < 8:
        raise DataError(f"{path}: truncated: {len(raw)} bytes is shorter than an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    if magic not in (IMAGE_MAGIC, LABEL_MAGIC):
        raise DataError(
            f"{path}: bad magic number 0x{magic:08x} (expected 0x{IMAGE_MAGIC:08x} for images "
            f"or 0x{LABEL_MAGIC:08x} for labels)"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if magic == IMAGE_MAGIC and dims[1:] != (SIDE, SIDE):
        raise DataError(f"{path}: images are {dims[1]}x{dims[2]}, expected {SIDE}x{SIDE}")
    expected_len = header + int(np.prod(dims))
    if len(raw) < expected_len:
        raise DataError(f"{path}: truncated: {len(raw)} bytes, the header promises {expected_len}")
    if len(raw) > expected_len:
        raise DataError(f"{path}: {len(raw) - expected_len} unexpected bytes after the data")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


@dataclass(frozen=True)
class Dataset:
    """Images as uint8 (n, 784), 0 = background, 255 = ink; labels uint8 (n,)."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if self.x.ndim != 2 or self.x.shape[1] != N_PIXELS:
            raise DataError(f"images must be (n, {N_PIXELS}), got {self.x.shape}")
        if len(self.x) != len(self.y):
            raise DataError(f"{len(self.x)} images but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)

    def slice(self, start: int, stop: int) -> Dataset:
        return Dataset(self.x[start:stop], self.y[start:stop])


@dataclass(frozen=True)
class Mnist:
    train: Dataset
    test: Dataset
    checksum: str  # MD5 over the four files' contents, recorded in weights metadata


def _pair(folder: Path, prefix: str) -> tuple[Dataset, list[str]]:
    images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")
    if images.ndim != 3 or labels.ndim != 1:
        raise DataError(f"{folder}: {prefix} images and labels are swapped or malformed")
    if labels.max(initial=0) > 9:
        raise DataError(f"{folder}: {prefix} labels outside 0-9")
    return Dataset(images.reshape(len(images), N_PIXELS), labels), [
        MNIST_MD5[f"{prefix}-images-idx3-ubyte"],
        MNIST_MD5[f"{prefix}-labels-idx1-ubyte"],
    ]


def load_mnist(path: str | os.PathLike | None = None) -> Mnist:
    """MNIST from `path` (default: the copy shipped in the repository's data/mnist)."""
    folder = Path(path or MNIST_DIR)
    train, sums_train = _pair(folder, "train")
    test, sums_test = _pair(folder, "t10k")
    checksum = hashlib.md5("".join(sums_train + sums_test).encode()).hexdigest()
    return Mnist(train, test, checksum)


def split(train: Dataset, train_size: int | None, val_size: int) -> tuple[Dataset, Dataset]:
    """Carve a validation set from the training set: the first train_size images train, the
    next val_size validate (the test set stays untouched for final evaluation)."""
    n = len(train)
    train_size = n - val_size if train_size is None else train_size
    if train_size < 1 or val_size < 0 or train_size + val_size > n:
        raise DataError(f"cannot split {n} images into {train_size} training + {val_size} validation")
    return train.slice(0, train_size), train.slice(train_size, train_size + val_size)


class ShiftAugmenter:
    """Random translations of up to +-max_shift pixels, gathered per batch from a padded copy.

    Every (dy, dx) window of the zero-padded images is a strided view, so a shifted batch is one
    fancy-indexing gather: almost free next to the matrix products.
    """

    def __init__(self, x: np.ndarray, max_shift: int) -> None:
        s = max_shift
        images = x.reshape(-1, SIDE, SIDE)
        padded = np.zeros((len(images), SIDE + 2 * s, SIDE + 2 * s), np.uint8)
        padded[:, s : s + SIDE, s : s + SIDE] = images
        self._padded = padded
        # (n, 2s+1, 2s+1, 28, 28) view: window [i, dy, dx] is image i moved by (s - dy, s - dx)
        self._windows = np.lib.stride_tricks.sliding_window_view(padded, (SIDE, SIDE), axis=(1, 2))
        self.max_shift = s

    def batch(self, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        k = 2 * self.max_shift + 1
        dy = rng.integers(0, k, len(idx))
        dx = rng.integers(0, k, len(idx))
        return self._windows[idx, dy, dx].reshape(len(idx), N_PIXELS)  # (batch, 784) uint8

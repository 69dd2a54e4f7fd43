"""MNIST loaders: the shipped files load and verify; every kind of damage is refused clearly."""

import gzip
import hashlib
import json
import shutil

import numpy as np
import pytest

from app.infra.settings import Settings
from digits.cli import main as cli
from model.data import (
    MNIST_MD5,
    DataError,
    Dataset,
    ShiftAugmenter,
    load_mnist,
    read_idx,
    split,
)
from model.paths import MNIST_DIR


def test_shipped_mnist_loads_with_checksums():
    d = load_mnist()
    assert d.train.x.shape == (60_000, 784) and d.train.y.shape == (60_000,)
    assert d.test.x.shape == (10_000, 784) and d.test.y.shape == (10_000,)
    assert d.train.x.dtype == np.uint8 and d.train.x.max() == 255
    assert sorted(np.unique(d.test.y)) == list(range(10))
    assert len(d.checksum) == 32


def _idx(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in dims)
    return header + payload


def test_raw_and_gzipped_idx_read_the_same(tmp_path):
    payload = (bytes(range(256)) * 10)[: 3 * 784]
    raw = _idx(0x803, (3, 28, 28), payload)
    (tmp_path / "imgs.idx").write_bytes(raw)
    (tmp_path / "imgs.idx.gz").write_bytes(gzip.compress(raw))
    a = read_idx(tmp_path / "imgs.idx")
    b = read_idx(tmp_path / "imgs.idx.gz")
    assert a.shape == (3, 28, 28)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a.reshape(-1), np.frombuffer(payload, np.uint8))


def test_bad_magic_number_is_refused(tmp_path):
    (tmp_path / "x.idx").write_bytes(_idx(0x804, (1, 28, 28), bytes(784)))
    with pytest.raises(DataError, match="bad magic number 0x00000804"):
        read_idx(tmp_path / "x.idx")


def test_wrong_image_dimensions_are_refused(tmp_path):
    (tmp_path / "x.idx").write_bytes(_idx(0x803, (2, 32, 32), bytes(2 * 1024)))
    with pytest.raises(DataError, match="32x32, expected 28x28"):
        read_idx(tmp_path / "x.idx")


def test_truncated_file_is_refused(tmp_path):
    (tmp_path / "x.idx").write_bytes(_idx(0x803, (2, 28, 28), bytes(784 + 100)))
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "x.idx")
    (tmp_path / "y.idx").write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "y.idx")


def test_damaged_gzip_is_refused(tmp_path):
    good = gzip.compress(_idx(0x801, (5,), bytes(5)))
    (tmp_path / "x.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="gzip"):
        read_idx(tmp_path / "x.gz")


def test_checksum_mismatch_on_a_known_file_is_refused(tmp_path):
    src = MNIST_DIR / "t10k-labels-idx1-ubyte.gz"
    labels = bytearray(gzip.decompress(src.read_bytes()))
    labels[100] = (labels[100] + 1) % 10  # one flipped label, still a valid IDX file
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(labels)))
    with pytest.raises(DataError, match="checksum mismatch"):
        read_idx(tmp_path / "t10k-labels-idx1-ubyte.gz")
    assert read_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", verify=False)[100 - 8] == labels[100]  # 8 header bytes


def test_missing_file_and_configurable_data_dir(tmp_path, monkeypatch, capsys):
    with pytest.raises(DataError, match="not found"):
        load_mnist(tmp_path)
    # DIGITS_DATA_DIR moves the data for the server (Settings) and the CLI alike.
    monkeypatch.setenv("DIGITS_DATA_DIR", str(tmp_path))
    assert Settings().data_dir == tmp_path
    weights = str(MNIST_DIR.parent.parent / "weights" / "seed.npz")
    assert cli(["evaluate", weights]) == 1 and "not found" in capsys.readouterr().err
    for f in MNIST_DIR.glob("*.gz"):
        shutil.copy(f, tmp_path / f.name)
    assert len(load_mnist(tmp_path).test) == 10_000
    assert cli(["evaluate", weights, "--json"]) == 0 and json.loads(capsys.readouterr().out)["n"] == 10_000


def test_validation_split_is_carved_from_training_set():
    x = np.arange(10 * 784, dtype=np.uint8).reshape(10, 784)
    ds = Dataset(x, np.arange(10, dtype=np.uint8))
    tr, va = split(ds, 6, 3)
    assert list(tr.y) == list(range(6)) and list(va.y) == [6, 7, 8]
    tr, va = split(ds, None, 2)
    assert len(tr) == 8 and list(va.y) == [8, 9]
    with pytest.raises(DataError, match="cannot split"):
        split(ds, 9, 2)


def test_shift_augmentation_moves_images_by_at_most_two_pixels():
    img = np.zeros((28, 28), np.uint8)
    img[10:18, 12:16] = 200
    aug = ShiftAugmenter(img.reshape(1, 784), 2)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        out = aug.batch(np.array([0]), rng).reshape(28, 28)
        assert out.sum() == img.sum()  # nothing shifted off the frame here
        ys, xs = np.nonzero(out)
        dy, dx = ys.min() - 10, xs.min() - 12
        assert abs(dy) <= 2 and abs(dx) <= 2
        np.testing.assert_array_equal(out, np.roll(img, (dy, dx), axis=(0, 1)))
        seen.add((int(dy), int(dx)))
    assert len(seen) == 25


def test_md5_table_matches_shipped_files():
    for f in sorted(MNIST_DIR.glob("*.gz")):
        content = gzip.decompress(f.read_bytes())
        assert hashlib.md5(content).hexdigest() == MNIST_MD5[f.name.removesuffix(".gz")]

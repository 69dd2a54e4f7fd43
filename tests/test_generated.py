"""Generated training sets kept on disk (model.generated): made once per recipe, never served stale."""

import numpy as np
import pytest

from model import generated, trust


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _counting(calls: list, value: int):
    def make():
        calls.append(value)
        return (np.full((3, 4), value, np.float32), np.arange(3))

    return make


def test_a_set_is_made_once_and_read_back_the_same(cache):
    calls = []
    first = generated.generated("example", _counting(calls, 1), seed=1, n=3)
    second = generated.generated("example", _counting(calls, 1), seed=1, n=3)
    assert calls == [1]
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(first, second, strict=True))
    assert len(list(cache.glob("example-*.npz"))) == 1


def test_every_argument_and_every_image_byte_is_part_of_the_key(cache):
    calls = []
    images = np.zeros((2, 784), np.uint8)
    generated.generated("example", _counting(calls, 1), seed=1, x=images)
    generated.generated("example", _counting(calls, 2), seed=2, x=images)
    changed = images.copy()
    changed[1, 400] = 1
    generated.generated("example", _counting(calls, 3), seed=1, x=changed)
    generated.generated("example", _counting(calls, 4), seed=1, x=images.astype(np.float32))
    assert calls == [1, 2, 3, 4]


def test_a_change_to_the_generating_code_makes_the_set_anew(cache, monkeypatch):
    calls = []
    generated.generated("example", _counting(calls, 1), seed=1)
    monkeypatch.setattr(generated, "_recipe_digest", lambda: "another recipe")
    generated.generated("example", _counting(calls, 2), seed=1)
    assert calls == [1, 2]


def test_a_damaged_file_is_made_anew_and_replaced(cache):
    calls = []
    generated.generated("example", _counting(calls, 1), seed=1)
    (path,) = cache.glob("example-*.npz")
    path.write_bytes(b"not an npz file")
    again = generated.generated("example", _counting(calls, 2), seed=1)
    assert calls == [1, 2] and again[0][0, 0] == 2
    assert np.load(path)["a0"][0, 0] == 2


def test_off_keeps_nothing_and_an_unwritable_folder_is_not_fatal(cache, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setenv("DIGITS_CACHE_DIR", "off")
    generated.generated("example", _counting(calls, 1), seed=1)
    generated.generated("example", _counting(calls, 1), seed=1)
    assert calls == [1, 1] and not cache.exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where the folder would be")
    monkeypatch.setenv("DIGITS_CACHE_DIR", str(blocker / "cache"))
    x, _ = generated.generated("example", _counting(calls, 5), seed=1)
    assert x[0, 0] == 5


def test_generated_drawings_are_the_same_from_the_cache_as_made(cache, monkeypatch):
    cached = trust.drawings(20, seed=3)
    assert len(list(cache.glob("drawings-*.npz"))) == 1
    monkeypatch.setenv("DIGITS_CACHE_DIR", "off")
    made = trust.drawings(20, seed=3)
    assert np.array_equal(cached[0], made[0]) and np.array_equal(cached[1], made[1])

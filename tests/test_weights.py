"""Weights files: exact round trips, atomic writes, and every kind of bad file refused."""

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from model import weights
from model.card import ModelCard
from model.network import Network
from model.weights import WeightsError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def net():
    return Network([784, 16, 10]).init(np.random.default_rng(0))


def _arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _write_npz(path, arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_round_trip_is_exact(tmp_path, net):
    card = ModelCard(layers=net.sizes, preset="quick", extra={"note": "hello"})
    path = weights.save(tmp_path / "m.npz", net, card)
    loaded, read = weights.load(path)
    assert loaded.sizes == [784, 16, 10] and loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded.params, net.params)
    assert read == card  # every field, and keys this version does not know, survive the round trip
    assert read.extra == {"note": "hello"} and read.layers == [784, 16, 10]
    assert read.created and read.input_normalisation.preprocess == "mnist-v1"
    x = np.random.default_rng(1).random((5, 784), dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict_proba(x), net.predict_proba(x))


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path, net, monkeypatch):
    path = weights.save(tmp_path / "m.npz", net, ModelCard(net.sizes))
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        weights.save(path, net, ModelCard(net.sizes))
    assert path.read_bytes() == before  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]  # the temp file is gone


def test_name_must_end_in_npz(tmp_path, net):
    with pytest.raises(ValueError, match=r"\.npz"):
        weights.save(tmp_path / "m.bin", net, ModelCard(net.sizes))


def test_truncated_file_is_refused(tmp_path, net):
    path = weights.save(tmp_path / "m.npz", net, ModelCard(net.sizes))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="unreadable or truncated"):
        weights.load(path)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        weights.load(tmp_path / "none.npz")


def test_nan_weights_are_refused(tmp_path, net):
    arrays = _arrays(weights.save(tmp_path / "m.npz", net, ModelCard(net.sizes)))
    arrays["W1"][3, 4] = np.nan
    _write_npz(tmp_path / "nan.npz", arrays)
    with pytest.raises(WeightsError, match="W1 contains NaN"):
        weights.load(tmp_path / "nan.npz")


def test_misshaped_weights_are_refused(tmp_path, net):
    arrays = _arrays(weights.save(tmp_path / "m.npz", net, ModelCard(net.sizes)))
    arrays["W0"] = arrays["W0"][:, :15]
    _write_npz(tmp_path / "bad.npz", arrays)
    with pytest.raises(WeightsError, match=r"W0 has shape \(784, 15\), expected \(784, 16\)"):
        weights.load(tmp_path / "bad.npz")


def test_missing_and_extra_arrays_are_refused(tmp_path, net):
    arrays = _arrays(weights.save(tmp_path / "m.npz", net, ModelCard(net.sizes)))
    missing = {k: v for k, v in arrays.items() if k != "b1"}
    _write_npz(tmp_path / "missing.npz", missing)
    with pytest.raises(WeightsError, match=r"missing \['b1'\]"):
        weights.load(tmp_path / "missing.npz")
    _write_npz(tmp_path / "extra.npz", {**arrays, "W9": np.zeros(3, np.float32)})
    with pytest.raises(WeightsError, match=r"unexpected \['W9'\]"):
        weights.load(tmp_path / "extra.npz")


def test_wrong_dtype_is_refused(tmp_path, net):
    arrays = _arrays(weights.save(tmp_path / "m.npz", net, ModelCard(net.sizes)))
    arrays["b0"] = arrays["b0"].astype(np.int32)
    _write_npz(tmp_path / "int.npz", arrays)
    with pytest.raises(WeightsError, match="float32"):
        weights.load(tmp_path / "int.npz")


def test_bad_metadata_is_refused(tmp_path, net):
    arrays = _arrays(weights.save(tmp_path / "m.npz", net, ModelCard(net.sizes)))
    _write_npz(tmp_path / "nometa.npz", {k: v for k, v in arrays.items() if k != "metadata"})
    with pytest.raises(WeightsError, match="no 'metadata'"):
        weights.load(tmp_path / "nometa.npz")
    _write_npz(tmp_path / "notjson.npz", {**arrays, "metadata": np.array("{not json")})
    with pytest.raises(WeightsError, match="not JSON"):
        weights.load(tmp_path / "notjson.npz")
    meta = json.loads(str(arrays["metadata"]))
    _write_npz(
        tmp_path / "layers.npz",
        {**arrays, "metadata": np.array(json.dumps({**meta, "layers": [784, 16, 5]}))},
    )
    with pytest.raises(WeightsError, match="10 outputs"):
        weights.load(tmp_path / "layers.npz")


def test_pickled_content_is_refused_without_unpickling(tmp_path, net):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    # A raw pickle file named .npz
    (tmp_path / "raw.npz").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(WeightsError, match=r"refused|unreadable"):
        weights.load(tmp_path / "raw.npz")
    # An .npz whose member is an object array (stored as a pickle inside the .npy)
    arrays = _arrays(weights.save(tmp_path / "m.npz", net, ModelCard(net.sizes)))
    buf = io.BytesIO()
    np.save(buf, np.array([Evil()], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(tmp_path / "obj.npz", "w") as z:
        for k, v in arrays.items():
            if k == "W0":
                continue
            member = io.BytesIO()
            np.save(member, v)
            z.writestr(f"{k}.npy", member.getvalue())
        z.writestr("W0.npy", buf.getvalue())
    with pytest.raises(WeightsError, match=r"refused|pickle"):
        weights.load(tmp_path / "obj.npz")
    assert not marker.exists()


def test_a_card_that_does_not_describe_a_model_is_refused(tmp_path, net):
    arrays = _arrays(weights.save(tmp_path / "m.npz", net, ModelCard(net.sizes)))
    meta = json.loads(str(arrays["metadata"]))
    for broken in ({**meta, "test": "99%"}, {**meta, "canvas": {"accuracy": 1.0}}, [meta]):
        _write_npz(tmp_path / "card.npz", {**arrays, "metadata": np.array(json.dumps(broken))})
        with pytest.raises(WeightsError, match="metadata"):
            weights.load(tmp_path / "card.npz")
    with pytest.raises(ValueError, match="layers"):
        weights.save(tmp_path / "x.npz", net, ModelCard([784, 99, 10]))


def test_shipped_files_read_as_typed_cards():
    for name in ("default", "seed"):
        card = weights.read_card(ROOT / "weights" / f"{name}.npz")
        assert card.preset == name and card.input_normalisation.preprocess == "mnist-v1"
        assert card.test.n == 10_000 and len(card.test.confusion) == 10 and card.canvas.n == 300
        assert card.training.config["layers"] == card.layers and card.extra == {}

"""The segment verifier: trained, saved and loaded as the reader uses it, and what the shipped one knows."""

import numpy as np
import pytest

from model import numbers, segments
from model.images import open_image
from model.number_set import by_label, number_set


def _auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    pos, neg = scores[positive], scores[~positive]
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def test_the_shipped_verifier_tells_whole_digits_from_fragments_and_pairs(mnist_test):
    """On numbers of MNIST test digits (the verifier learnt from training digits), every kind of pen,
    canvas and gap, a fifth of them photographed."""
    mnist = by_label(mnist_test.x.reshape(-1, 28, 28)[5000:], mnist_test.y[5000:])
    x, y = segments.labelled(number_set(60, 404, mnist, held_out=None), photos=0.2, seed=404)
    verifier = segments.load(segments.DEFAULT_PATH)
    auroc = _auroc(verifier.network.predict_proba(x)[:, 0], y == 0)
    print(f"\nverifier on {len(y)} candidates of test-digit numbers: AUROC {auroc:.3f}")
    assert auroc >= 0.95
    assert verifier.about["numbers"] >= 1000


def test_a_verifier_trains_saves_and_loads(tmp_path, mnist_test):
    mnist = by_label(mnist_test.x.reshape(-1, 28, 28)[:2000], mnist_test.y[:2000])
    x, y = segments.labelled(number_set(40, 1, mnist), photos=0.3, seed=1)
    assert set(np.unique(y)) == {0, 1} and x.shape[1] == 784 + numbers.N_SHAPE
    net = segments.train(x, y, seed=0, epochs=2)
    path = segments.save(tmp_path / "v.npz", net, {"numbers": 40})
    loaded = segments.load(path)
    c = numbers.candidates(numbers.read_page(open_image(next(number_set(1, 2, mnist)).png)))
    assert np.allclose(loaded(c), net.predict_proba(segments.features(c))[:, 0], atol=1e-6)
    assert loaded.about == {"numbers": 40}
    (tmp_path / "bad.npz").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="not a segment verifier"):
        segments.load(tmp_path / "bad.npz")

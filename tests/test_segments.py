"""The segment verifier: trained, saved and loaded as the reader uses it, and what the shipped one knows."""

import numpy as np
import pytest

from model import numbers, segments
from model.images import open_image
from model.number_set import by_label, number_set, written_number


def _auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    pos, neg = scores[positive], scores[~positive]
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def test_the_shipped_verifier_tells_whole_digits_from_fragments_and_pairs(mnist_test):
    """On numbers of MNIST test digits (the verifier learnt from training digits), every kind of pen,
    canvas and gap, a fifth of them photographed."""
    mnist = by_label(mnist_test.x.reshape(-1, 28, 28)[5000:], mnist_test.y[5000:])
    x, y, _ = segments.labelled(number_set(60, 404, mnist, held_out=None), photos=0.2, seed=404)
    verifier = segments.load(segments.DEFAULT_PATH)
    auroc = _auroc(verifier.network.predict_proba(x)[:, 0], y == 0)
    both = _auroc(verifier.whole(x), y == 0)
    print(f"\nverifier on {len(y)} candidates of test-digit numbers: AUROC {auroc:.3f}, with the reader {both:.3f}")
    assert auroc >= 0.95
    assert both >= auroc + 0.01  # the reader's judgement is worth its cost
    assert verifier.about["numbers"] >= 1000


def test_the_shipped_reader_reads_digits_cut_from_touching_ink_better_than_the_classifier(mnist_test):
    """Whole digits as the segmentation cuts them out of touching ink (numbers of MNIST test digits: the
    reader learnt from training digits): the reader beats the served classifier it started from."""
    from model import weights
    from model.paths import WEIGHTS_DIR

    mnist = by_label(mnist_test.x.reshape(-1, 28, 28)[5000:], mnist_test.y[5000:])
    touching = [w for w in number_set(120, 405, mnist, held_out=None) if w.touching][:50]
    x, _, classes = segments.labelled(touching)
    cut = ((x[:, 784 + 3] + x[:, 784 + 4]) > 0) & (classes >= 0) & (classes < segments.NOT_ONE)
    crops, digits = x[cut, :784], classes[cut]
    reader = segments.load(segments.DEFAULT_PATH)
    served = weights.load_predictor(WEIGHTS_DIR / "cnn.npz")
    by_reader = float(np.mean(reader.read(crops).argmax(axis=1) == digits))
    by_served = float(np.mean(served.network.predict(crops) == digits))
    print(f"\n{len(digits)} cut digits of test-digit numbers: reader {by_reader:.1%}, served cnn {by_served:.1%}")
    assert len(digits) >= 200
    assert by_reader >= 0.9 and by_reader >= by_served + 0.1


def test_a_verifier_trains_saves_and_loads(tmp_path, mnist_test):
    mnist = by_label(mnist_test.x.reshape(-1, 28, 28)[:2000], mnist_test.y[:2000])
    x, y, classes = segments.labelled(number_set(40, 1, mnist), photos=0.3, seed=1)
    assert set(np.unique(y)) == {0, 1} and x.shape[1] == 784 + numbers.N_SHAPE
    assert np.array_equal(classes == segments.NOT_ONE, y == 1) and set(np.unique(classes[y == 0])) <= set(range(10))
    net = segments.train(x, y, seed=0, epochs=2)
    path = segments.save(tmp_path / "v.npz", net, {"numbers": 40})
    loaded = segments.load(path)
    c = numbers.candidates(numbers.read_page(open_image(next(number_set(1, 2, mnist)).png)))
    assert np.allclose(loaded(c), net.predict_proba(segments.features(c))[:, 0], atol=1e-6)
    assert loaded.about == {"numbers": 40}
    # with its reader: the served CNN grown an eleventh class, NOT_ONE
    from model import weights
    from model.paths import WEIGHTS_DIR

    start, _ = weights.load(WEIGHTS_DIR / "cnn.npz")
    runs = classes >= 0
    reader = segments.train_reader(start, x[runs, :784][:512], classes[runs][:512], epochs=1)
    both = segments.load(segments.save(tmp_path / "r.npz", net, {}, reader))
    p11 = reader.predict_proba(segments.features(c)[:, :784])
    assert p11.shape == (len(c.runs), segments.NOT_ONE + 1)
    expected = np.sqrt(net.predict_proba(segments.features(c))[:, 0] * (1 - p11[:, segments.NOT_ONE]))
    assert np.allclose(both(c), expected, atol=1e-6)
    read = both.read(c.crops.reshape(len(c.crops), -1))
    assert read.shape == (len(c.runs), 10) and np.allclose(read.sum(axis=1), 1, atol=1e-5)
    assert np.array_equal(read.argmax(axis=1), p11[:, :10].argmax(axis=1))
    # a file whose reader has ten outputs (the cut-digit reader before NOT_ONE) is refused, not misread
    with pytest.raises(ValueError, match="11-class reader"):
        segments.load(segments.save(tmp_path / "old.npz", net, {}, start))
    (tmp_path / "bad.npz").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="not a segment verifier"):
        segments.load(tmp_path / "bad.npz")


def test_a_run_holding_a_thin_neighbour_is_never_labelled_whole(mnist_test):
    """A 1 touching a 4 hardly widens the 4's box, so by IoU alone "41" read as one run looks like the 4
    (the verifier learnt to accept such pairs). A run spanning most of another digit is not whole."""
    mnist = by_label(mnist_test.x.reshape(-1, 28, 28)[:2000], mnist_test.y[:2000])
    rng = np.random.default_rng(3)
    for text in ("41", "14", "71", "1111"):
        w = written_number(text, rng, "pen", "touching", "medium", "pad", mnist)
        page = numbers.read_page(open_image(w.png))
        c = numbers.candidates(page)
        k = segments.labels(page, c, w.boxes, w.text)
        ones = [b for b, ch in zip(w.boxes, text, strict=True) if ch == "1"]
        for b, label in zip(c.boxes, k, strict=True):
            box = page.box(*b)
            digits_held = sum(segments._x_cover(box, t) >= 0.9 for t in w.boxes)
            if digits_held >= 2:
                assert label == segments.NOT_ONE, (text, box, label)
        # and the 1 alone, where the candidates hold it, is a whole 1
        alone = [
            lab for b, lab in zip(c.boxes, k, strict=True) if max(segments._iou(page.box(*b), t) for t in ones) >= 0.9
        ]
        assert all(lab == 1 for lab in alone), (text, alone)

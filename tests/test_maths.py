"""The network's maths: stable softmax and loss, gradients checked by finite differences."""

import numpy as np
import pytest

from model.functional import softmax, softmax_cross_entropy_
from model.network import Network


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """The obvious, allocating mean cross-entropy: the reference the fused training loss is checked against."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # (m, 10)
    return float(-logp[np.arange(len(labels)), labels].mean())


def _dense(net: Network) -> list:
    """The dense layers of a stack given by its sizes: their params["W"], ["b"] and grads."""
    return [layer for layer in net.layers if layer.kind == "dense"]


def test_softmax_and_loss_stay_finite_for_huge_logits():
    z = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0], [1000.0, 1000.0, -1000.0]], np.float32)
    p = softmax(z)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(p[0], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(p[2], [0.5, 0.5, 0], atol=1e-6)
    labels = np.array([1, 0, 2])
    loss = cross_entropy(z, labels)
    assert np.isfinite(loss)
    # Row 0 puts label 1 at 2000 below the max: its loss alone is 2000, averaged over 3 rows.
    assert loss == pytest.approx((2000 + np.log(3) + (2000 + np.log(2))) / 3, rel=1e-5)
    z2 = z.copy()
    assert softmax_cross_entropy_(z2, labels) == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(z2, p, atol=1e-6)


def test_loss_gradient_wrt_logits_is_p_minus_y_over_m():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((5, 4))
    y = rng.integers(0, 4, 5)
    analytic = softmax(z)
    analytic[np.arange(5), y] -= 1
    analytic /= 5
    numeric = np.zeros_like(z)
    h = 1e-6
    for idx in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += h
        zm[idx] -= h
        numeric[idx] = (cross_entropy(zp, y) - cross_entropy(zm, y)) / (2 * h)
    rel = np.abs(numeric - analytic).max() / np.abs(analytic).max()
    assert rel < 1e-6


def _loss(net: Network, X, y) -> float:
    return cross_entropy(net.logits(X), y)


@pytest.mark.parametrize("sizes", [[6, 5, 4], [7, 6, 5, 4, 3], [8, 3]])
def test_gradients_of_every_layer_match_finite_differences(sizes):
    rng = np.random.default_rng(1)
    net = Network(sizes, np.float64).init(rng, "he")
    for b in (d.params["b"] for d in _dense(net)):  # nonzero biases so their gradients are exercised away from zero
        b[...] = rng.standard_normal(b.shape) * 0.1
    X = rng.standard_normal((9, sizes[0]))
    y = rng.integers(0, sizes[-1], 9)
    net.backprop(X, y)
    analytic = net.grads.copy()
    h = 1e-6
    for layer, d in enumerate(_dense(net)):
        for name, param, grad in (("W", d.params["W"], d.grads["W"]), ("b", d.params["b"], d.grads["b"])):
            numeric = np.zeros(param.shape)
            for idx in np.ndindex(param.shape):
                old = param[idx]
                param[idx] = old + h
                up = _loss(net, X, y)
                param[idx] = old - h
                down = _loss(net, X, y)
                param[idx] = old
                numeric[idx] = (up - down) / (2 * h)
            net.backprop(X, y)
            rel = np.linalg.norm(numeric - grad) / max(np.linalg.norm(numeric) + np.linalg.norm(grad), 1e-12)
            assert rel < 1e-6, f"{name}{layer}: relative error {rel:.2e}"
    np.testing.assert_array_equal(net.grads, analytic)


def test_bias_gradients_are_per_unit_sums_over_the_batch():
    """The seed's bug summed dZ over everything into one scalar; each unit has its own gradient."""
    rng = np.random.default_rng(2)
    net = Network([4, 3, 3], np.float64).init(rng, "uniform")
    X = rng.random((6, 4))
    y = np.array([0, 1, 2, 0, 1, 2])
    net.backprop(X, y)
    (W0, b0, db0), (W1, _, db1) = ((d.params["W"], d.params["b"], d.grads["b"]) for d in _dense(net))
    P = softmax(net.logits(X))
    dZ2 = P.copy()
    dZ2[np.arange(6), y] -= 1
    dZ2 /= 6
    np.testing.assert_allclose(db1, dZ2.sum(axis=0), rtol=1e-12)
    assert db1.shape == (3,)
    assert len(set(np.round(db1, 12))) == 3  # not one value broadcast to every unit
    A1 = np.maximum(X @ W0 + b0, 0)
    dZ1 = dZ2 @ W1.T * (A1 > 0)
    np.testing.assert_allclose(db0, dZ1.sum(axis=0), rtol=1e-12)


def test_batch_size_comes_from_the_batch():
    """Gradients are means over the batch passed in, whatever the size of an earlier batch."""
    rng = np.random.default_rng(3)
    net = Network([5, 4, 3], np.float64).init(rng)
    X = rng.standard_normal((8, 5))
    y = rng.integers(0, 3, 8)
    net.backprop(X[:2], y[:2])
    net.backprop(X, y)
    full = net.grads.copy()
    halves = []
    for part in (slice(0, 4), slice(4, 8)):
        net.backprop(X[part], y[part])
        halves.append(net.grads.copy())
    np.testing.assert_allclose(full, (halves[0] + halves[1]) / 2, rtol=1e-12)


def test_network_rejects_wrong_input_shape_and_sizes():
    net = Network([784, 10, 10])
    with pytest.raises(ValueError, match="784"):
        net.predict(np.zeros((2, 100)))
    with pytest.raises(ValueError):
        Network([784])
    with pytest.raises(ValueError):
        Network([784, 0, 10])


def test_initialisation_schemes():
    rng = np.random.default_rng(0)
    he = Network([784, 512, 10]).init(rng, "he")
    assert he.named_params()["W0"].std() == pytest.approx(np.sqrt(2 / 784), rel=0.02)
    assert not he.named_params()["b0"].any()
    uni = Network([784, 10, 10]).init(rng, "uniform")
    for a in uni.named_params().values():
        assert a.min() >= -0.5 and a.max() < 0.5
    assert uni.named_params()["W0"].std() == pytest.approx(1 / np.sqrt(12), rel=0.05)
    with pytest.raises(ValueError, match="unknown init"):
        Network([784, 10]).init(rng, "zeros")


def test_predict_proba_rows_sum_to_one_in_float32():
    rng = np.random.default_rng(0)
    net = Network([784, 32, 10]).init(rng)
    p = net.predict_proba(rng.random((300, 784)), chunk=128)
    assert p.dtype == np.float32 and p.shape == (300, 10)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)

"""model.seed, the seed network's equations in the tutorial's notation, against the layer stack that
serves and trains it: the same answers and the same gradients on the shipped weights/seed.npz."""

from pathlib import Path

import numpy as np

from model import seed, weights
from model.paths import WEIGHTS_DIR
from model.spec import from_pixels

SEED = WEIGHTS_DIR / "seed.npz"


def test_seed_equations_answer_as_the_layer_stack(mnist_test):
    net, _ = weights.load(SEED)
    X = from_pixels(mnist_test.x[:2000], np.float64)  # (m, 784), rows are samples
    p = seed.load(SEED)
    assert p.W1.shape == (10, 784) and p.b1.shape == (10, 1) and p.W2.shape == (10, 10)
    Z1, A1, Z2, A2 = seed.forward_prop(p, X.T)  # columns are samples
    assert A2.shape == (10, 2000)
    first_dense, relu, _ = net.layers
    np.testing.assert_allclose(Z1.T, first_dense.forward(X.astype(np.float32)), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(A1.T, relu.forward(first_dense.forward(X.astype(np.float32))), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(Z2.T, net.logits(X), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(A2.T, net.predict_proba(X), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(seed.get_predictions(A2), net.predict(X))
    accuracy = (seed.get_predictions(A2) == mnist_test.y[:2000]).mean()
    assert 0.8 <= accuracy <= 0.9  # the seed's own figure, not a better network's


def test_seed_gradients_equal_the_layer_stacks_backprop(mnist_test):
    net, _ = weights.load(SEED)
    net64 = type(net)(net.spec, np.float64)
    net64.params[...] = net.params
    X = from_pixels(mnist_test.x[:500], np.float64)
    Y = mnist_test.y[:500].astype(np.intp)
    net64.backprop(X, Y)
    grads = seed.backward_prop(seed.load(SEED), X.T.astype(np.float64), Y)
    dense = [layer.grads for layer in net64.layers if layer.kind == "dense"]
    named = {"W0": dense[0]["W"], "b0": dense[0]["b"], "W1": dense[1]["W"], "b1": dense[1]["b"]}
    mine = {"W0": grads.W1.T, "b0": grads.b1[:, 0], "W1": grads.W2.T, "b1": grads.b2[:, 0]}
    for name, g in mine.items():
        np.testing.assert_allclose(named[name], g, rtol=1e-6, atol=1e-9, err_msg=name)


def test_one_gradient_step_lowers_the_loss(mnist_test):
    p = seed.load(SEED)
    X = from_pixels(mnist_test.x[:1000], np.float64).T
    Y = mnist_test.y[:1000]

    def loss(params):
        A2 = seed.forward_prop(params, X)[3]
        return -np.log(A2[Y, np.arange(Y.size)]).mean()

    stepped = seed.update_params(p, seed.backward_prop(p, X, Y), alpha=0.1)
    assert loss(stepped) < loss(p)


def test_the_seed_file_stays_short():
    assert len(Path(seed.__file__).read_text().splitlines()) <= 80

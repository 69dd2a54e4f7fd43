"""The CNN's layers: gradients by finite differences in float64, the convolution against a direct
implementation, layer lists validated, weights files of CNNs, and distortions reproducible."""

import numpy as np
import pytest

from model import weights
from model.augment import Distorter, Distortions
from model.card import ModelCard
from model.config import PRESETS, TrainConfig
from model.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU, describe
from model.network import Network, build_layers
from model.weights import WeightsError

H = 1e-6


def _with_params(layer, in_shape, rng):
    """A layer built for `in_shape` with its own parameter arrays, randomly filled."""
    layer.build(in_shape)
    layer.params = {k: rng.standard_normal(s) * 0.5 for k, s in layer.param_shapes().items()}
    layer.grads = {k: np.zeros(s) for k, s in layer.param_shapes().items()}
    layer.state = {k: np.ones(s) for k, s in layer.state_shapes().items()}
    return layer


def _numeric(f, array):
    """d f / d array by central differences, element by element."""
    grad = np.zeros(array.shape)
    for idx in np.ndindex(array.shape):
        old = array[idx]
        array[idx] = old + H
        up = f()
        array[idx] = old - H
        down = f()
        array[idx] = old
        grad[idx] = (up - down) / (2 * H)
    return grad


def _rel(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-12)


LAYERS = [
    pytest.param(lambda: Conv2D(3, 3), (6, 6, 2), id="conv-2ch"),
    pytest.param(lambda: Conv2D(2, 3), (5, 6, 1), id="conv-1ch"),
    pytest.param(lambda: MaxPool2D(2), (4, 6, 3), id="maxpool"),
    pytest.param(lambda: ReLU(), (4, 4, 2), id="relu"),
    pytest.param(lambda: Flatten(), (3, 2, 2), id="flatten"),
    pytest.param(lambda: Dense(4), (7,), id="dense"),
    pytest.param(lambda: BatchNorm(), (3, 4, 3), id="batchnorm-images"),
    pytest.param(lambda: BatchNorm(), (5,), id="batchnorm-vectors"),
]


@pytest.mark.parametrize("make, in_shape", LAYERS)
def test_each_layer_gradient_matches_finite_differences(make, in_shape):
    """Loss = sum(forward(x) * R) for a fixed random R: dLoss/dy = R, so backward(R) must equal the
    numeric gradient with respect to x and every parameter. Forward in training mode, the one backward
    differentiates (for batch norm: with the batch's own statistics)."""
    rng = np.random.default_rng(3)
    layer = _with_params(make(), in_shape, rng)
    x = rng.standard_normal((3, *in_shape))
    R = rng.standard_normal(layer.forward(x.copy()).shape)

    def loss():
        return float((layer.forward(x.copy(), training=True) * R).sum())

    layer.forward(x.copy(), training=True)
    dx = layer.backward(R.copy()).copy()
    assert _rel(dx, _numeric(loss, x)) < 1e-6
    for name, p in layer.params.items():
        layer.forward(x.copy(), training=True)
        layer.backward(R.copy())
        assert _rel(layer.grads[name], _numeric(loss, p)) < 1e-6, name


def test_dropout_gradient_follows_its_mask_and_inference_is_identity():
    rng = np.random.default_rng(4)
    layer = Dropout(0.4)
    layer.rng = np.random.default_rng(5)
    x = rng.standard_normal((50, 20))
    y = layer.forward(x, training=True)
    kept = y != 0
    assert 0.5 < kept.mean() < 0.7  # about 60% kept
    np.testing.assert_allclose(y[kept], x[kept] / 0.6)
    np.testing.assert_allclose(layer.backward(np.ones_like(x)), kept / 0.6)
    np.testing.assert_array_equal(layer.forward(x), x)


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5])
def test_dropout_drops_its_rate_of_a_large_batch(rate):
    """The mask comes from 16-bit pieces of raw 64-bit draws; over a million inputs the share dropped
    is the rate to within 6 standard deviations, and each of the four pieces of a draw drops alike."""
    layer = Dropout(rate)
    layer.rng = np.random.default_rng(9)
    dropped = layer.forward(np.ones((1000, 1000), np.float32), training=True) == 0
    assert abs(dropped.mean() - rate) < 6 * np.sqrt(rate * (1 - rate) / dropped.size)
    by_piece = dropped.reshape(-1, 4).mean(axis=0)
    assert np.all(np.abs(by_piece - rate) < 6 * np.sqrt(rate * (1 - rate) / (dropped.size / 4)))


def _direct_conv(x, W, b, K):
    """The obvious convolution: every output pixel, every filter, a sum over its window."""
    m, Hh, Ww, C = x.shape
    Wk = W.reshape(K, K, C, -1)
    out = np.zeros((m, Hh - K + 1, Ww - K + 1, Wk.shape[-1]))
    for n in range(m):
        for i in range(Hh - K + 1):
            for j in range(Ww - K + 1):
                for f in range(Wk.shape[-1]):
                    out[n, i, j, f] = (x[n, i : i + K, j : j + K, :] * Wk[..., f]).sum() + b[f]
    return out


@pytest.mark.parametrize("channels", [1, 3])
def test_convolution_matches_the_direct_implementation(channels):
    rng = np.random.default_rng(6)
    conv = _with_params(Conv2D(4, 5), (9, 8, channels), rng)
    x = rng.standard_normal((2, 9, 8, channels))
    np.testing.assert_allclose(
        conv.forward(x), _direct_conv(x, conv.params["W"], conv.params["b"], 5), rtol=1e-10, atol=1e-12
    )


def test_a_whole_small_cnn_gradient_matches_finite_differences():
    rng = np.random.default_rng(7)
    specs = [
        {"type": "conv", "filters": 3, "size": 3},
        {"type": "maxpool", "size": 2},
        {"type": "batchnorm"},
        {"type": "relu"},
        {"type": "conv", "filters": 4, "size": 4},
        {"type": "relu"},
        {"type": "maxpool", "size": 5},
        {"type": "flatten"},
        {"type": "dense", "units": 6},
        {"type": "relu"},
        {"type": "dense", "units": 10},
    ]
    net = Network(specs, np.float64).init(rng)
    net.params += rng.standard_normal(net.n_params) * 0.05  # biases away from zero
    X, y = rng.random((4, 784)), rng.integers(0, 10, 4)
    net.backprop(X, y)
    analytic = net.grads.copy()
    for i, layer in enumerate(net.layers):  # every parameter of every layer that has some
        for name, p in layer.params.items():
            flat = p.reshape(-1)
            analytic_p = layer.grads[name].reshape(-1).copy()
            picked = rng.choice(flat.size, min(flat.size, 60), replace=False)
            numeric = np.array([_one(net, flat, k, X, y) for k in picked])
            # (a bias just before a batch norm has no effect, so a gradient of 0 up to rounding)
            close = _rel(analytic_p[picked], numeric) < 1e-6 or np.abs(analytic_p[picked] - numeric).max() < 1e-8
            assert close, f"layer {i} {name}"
    net.backprop(X, y)
    np.testing.assert_array_equal(net.grads, analytic)  # the probes changed nothing for good


def test_a_first_convolution_laid_out_for_its_pooling_trains_as_the_usual_layout():
    """In training, a first convolution that pooling follows lays its output out window offset first
    (Conv2D.pool_order), a faster layout for the pooling; the loss, the probabilities and every
    gradient must be those of the usual layout, ties in blank areas included."""
    rng = np.random.default_rng(8)
    specs = [*CNN[:3], {"type": "batchnorm"}, *CNN[3:4], {"type": "dense", "units": 10}]
    fast = Network(specs, np.float64).init(rng)
    fast.layers[0].params["b"][...] = 0.5  # blank windows then tie above zero, where ReLU lets them through
    usual = Network(specs, np.float64)
    usual.params[...], usual.state[...] = fast.params, fast.state
    usual.layers[0].pool_order = 0
    assert fast.layers[0].pool_order == 2  # the layout under test is in use
    X = rng.random((6, 784))
    X.reshape(6, 28, 28)[:, :14] = 0  # blank above: windows there tie (at the bias)
    y = rng.integers(0, 10, 6)
    a, b = fast.backprop(X, y), usual.backprop(X, y)
    assert a.loss == pytest.approx(b.loss, rel=1e-12)
    np.testing.assert_allclose(a.probabilities, b.probabilities, rtol=1e-12)
    np.testing.assert_allclose(fast.grads, usual.grads, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fast.state, usual.state, rtol=1e-12)


def _one(net, flat, k, X, y):
    """The loss's numeric derivative in one parameter, with the training forward pass (batch
    statistics in batch norm), which is what backprop differentiates."""
    old = flat[k]
    flat[k] = old + H
    up = net.backprop(X, y).loss
    flat[k] = old - H
    down = net.backprop(X, y).loss
    flat[k] = old
    return (up - down) / (2 * H)


CNN = [
    {"type": "conv", "filters": 4, "size": 5},
    {"type": "maxpool", "size": 2},
    {"type": "relu"},
    {"type": "flatten"},
    {"type": "dropout", "rate": 0.25},
    {"type": "dense", "units": 10},
]


@pytest.mark.parametrize(
    "specs, message",
    [
        ([{"type": "conv", "filters": 4, "size": 5}, {"type": "maxpool", "size": 5}], "pooling needs"),
        ([{"type": "dense", "units": 10}], "dense layer takes vectors"),
        ([{"type": "conv", "filters": 4, "size": 17}, {"type": "conv", "filters": 4, "size": 13}], "at least that big"),
        ([{"type": "conv", "filters": 4, "size": 29}], "'size' must be an integer from 1 to 28"),
        ([{"type": "flatten"}, {"type": "dense", "units": 7}], "last layer must be dense with 10"),
        ([{"type": "flatten"}, {"type": "dense", "units": 0}], "'units' must be an integer from 1"),
        ([{"type": "flatten"}, {"type": "dense", "units": 10, "bias": False}], "unknown key"),
        ([{"type": "softmax"}], "'type' among"),
        ([{"type": "flatten"}, {"type": "dropout", "rate": 1.0}, {"type": "dense", "units": 10}], "'rate'"),
        ([{"type": "flatten"}, {"type": "dense", "units": 65536}, {"type": "dense", "units": 10}], "parameters"),
    ],
)
def test_impossible_networks_are_refused_with_the_reason(specs, message):
    with pytest.raises(ValueError, match=message):
        build_layers(specs)
    with pytest.raises(ValueError, match=message):
        TrainConfig(layers=specs)
    with pytest.raises(ValueError, match="non-empty list"):
        build_layers([])


def test_cnn_weights_round_trip_and_validation(tmp_path):
    net = Network(CNN).init(np.random.default_rng(0))
    path = weights.save(tmp_path / "cnn.npz", net, ModelCard(layers=net.spec))
    loaded, card = weights.load(path)
    assert isinstance(loaded, Network) and card.layers == CNN and card.architecture == "4C5-P2-D0.25-10"
    np.testing.assert_array_equal(loaded.params, net.params)
    x = np.random.default_rng(1).random((3, 784), dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict_proba(x), net.predict_proba(x))
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    assert set(arrays) == {"metadata", "L0.W", "L0.b", "L5.W", "L5.b"}

    def refused(changed, message):
        bad = tmp_path / "bad.npz"
        with open(bad, "wb") as f:
            np.savez(f, **changed)
        with pytest.raises(WeightsError, match=message):
            weights.load(bad)

    refused({**arrays, "L0.W": arrays["L0.W"][:-1]}, r"L0.W has shape \(24, 4\), expected \(25, 4\)")
    refused({**arrays, "L5.b": np.full(10, np.nan, np.float32)}, "NaN or infinite")
    refused({**arrays, "L0.b": arrays["L0.b"].astype(np.float64)}, "all be float32 or all float64")
    refused({k: v for k, v in arrays.items() if k != "L5.W"}, r"missing \['L5.W'\]")
    impossible = ModelCard(layers=[{"type": "conv", "filters": 4, "size": 5}, {"type": "maxpool", "size": 3}])
    refused({**arrays, "metadata": np.array(__import__("json").dumps(impossible.as_dict()))}, "impossible network")


def test_shipped_dense_files_still_load_as_dense_networks():
    from model.paths import WEIGHTS_DIR

    for name in ("seed.npz", "default.npz"):
        net, card = weights.load(WEIGHTS_DIR / name)
        assert isinstance(net, Network) and card.layers == net.sizes


def test_describe_names_layers_in_the_usual_notation():
    assert describe([784, 256, 10]) == "784-256-10"
    assert describe(PRESETS["cnn"].layers) == "16C5-P2-BN-64C5-P2-BN-D0.3-256-BN-D0.3-10"


def test_distortions_are_reproducible_and_keep_the_digit_in_place():
    rng = np.random.default_rng(8)
    x = np.zeros((4, 784), np.uint8)
    x.reshape(4, 28, 28)[:, 9:12, 8:20] = 255  # a horizontal bar, 3 pixels thick, like a pen stroke
    d = Distorter(x, Distortions(shift=2, rotate=15, scale=0.15, elastic=1.5))
    idx = np.arange(4)
    a, b = d.batch(idx, np.random.default_rng(1)), d.batch(idx, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)  # same seed, same batch
    assert not np.array_equal(a, d.batch(idx, rng))
    assert a.min() >= 0 and a.max() <= 1 and a.dtype == np.float32
    ink = a.reshape(4, 28, 28).sum(axis=(1, 2)) * 255 / x[0].astype(float).sum()
    assert np.all((ink > 0.5) & (ink < 2.5))  # the bar is moved, bent, thinned or thickened, never lost
    rows = (a.reshape(4, 28, 28).sum(axis=2) * np.arange(28)).sum(axis=1) / a.reshape(4, -1).sum(axis=1)
    assert np.all(np.abs(rows - 10) < 4)  # and stays about where it was
    still = Distorter(x, Distortions())
    np.testing.assert_allclose(still.batch(idx, rng), x / 255, atol=1e-6)  # no distortion: the image itself


def test_a_small_cnn_learns_and_its_seed_reproduces_it():
    """Dropout masks and distortions come from the run's generator: the same seed, the same weights."""
    from model.data import load_mnist, split
    from model.evaluation import evaluate
    from model.train import train

    layers = [
        {"type": "conv", "filters": 6, "size": 5},
        {"type": "maxpool", "size": 4},
        {"type": "batchnorm"},
        {"type": "relu"},
        {"type": "flatten"},
        {"type": "dropout", "rate": 0.2},
        {"type": "dense", "units": 10},
    ]
    cfg = TrainConfig(
        layers=layers, lr=1e-2, epochs=3, train_size=3000, val_size=1000, augment_shift=1, augment_rotate=8
    )
    tr, va = split(load_mnist().train, cfg.train_size, cfg.val_size)
    first, again = train(cfg, tr, va), train(cfg, tr, va)
    np.testing.assert_array_equal(first.network.params, again.network.params)
    np.testing.assert_array_equal(first.network.state, again.network.state)  # batch norm's running statistics
    other = train(cfg.replace(seed=1), tr, va)
    assert not np.array_equal(first.network.params, other.network.params)
    assert evaluate(first.network, va).accuracy > 0.85

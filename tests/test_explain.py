"""The inside view (model.explain, POST /explain): what it shows is what the network computes.

Activations against the forward pass, the backward pass at inference against finite differences on
small float64 networks (every layer kind, then whole networks), unit sums against the unit's value,
the seed's templates against W1, occlusion against erasing a patch by hand, and the API's answers,
errors and size.
"""

import base64

import numpy as np
import pytest

from model import explain as inside
from model import seed
from model.layers import BatchNorm, Dense, Dropout, MaxPool2D
from model.network import Network
from model.weights import load
from tests import test_convnet
from tests.test_convnet import _numeric, _rel, _with_params

CNN = [
    {"type": "conv", "filters": 3, "size": 5},
    {"type": "maxpool", "size": 2},
    {"type": "batchnorm"},
    {"type": "relu"},
    {"type": "conv", "filters": 4, "size": 3},
    {"type": "maxpool", "size": 2},
    {"type": "relu"},
    {"type": "flatten"},
    {"type": "dropout", "rate": 0.3},
    {"type": "dense", "units": 12},
    {"type": "batchnorm"},
    {"type": "relu"},
    {"type": "dense", "units": 10},
]


def decode(encoded: dict) -> np.ndarray:
    q = np.frombuffer(base64.b64decode(encoded["data"]), np.uint8).astype(np.float64)
    return (encoded["low"] + q * (encoded["high"] - encoded["low"]) / 255).reshape(encoded["shape"])


def _random_network(layers, rng) -> Network:
    net = Network(layers, dtype=np.float64).init(rng)
    net.params[:] = rng.standard_normal(net.params.size) * 0.3
    net.state[:] = rng.uniform(0.5, 1.5, net.state.size)  # batch norm's running means and variances
    return net


# Every layer kind of tests/test_convnet.py (whose training backward is checked there), and dropout.
LAYERS = [*test_convnet.LAYERS, pytest.param(lambda: Dropout(0.5), (6,), id="dropout")]


@pytest.mark.parametrize("make, in_shape", LAYERS)
def test_each_layers_inference_backward_matches_finite_differences(make, in_shape):
    """Loss = sum(forward(x, inference) * R): input_gradient(R) must be its numeric gradient in x. Batch
    norm uses its running statistics here (constants), dropout is the identity."""
    rng = np.random.default_rng(3)
    layer = _with_params(make(), in_shape, rng)
    if isinstance(layer, BatchNorm):
        layer.state = {"mean": rng.standard_normal(in_shape[-1]), "var": rng.uniform(0.5, 2, in_shape[-1])}
    x = rng.standard_normal((2, *in_shape))
    y = layer.forward(x, training=False)
    R = rng.standard_normal(y.shape)
    dx = layer.input_gradient(R, x, y)
    numeric = _numeric(lambda: float((layer.forward(x, training=False) * R).sum()), x)
    assert _rel(dx, numeric) < 1e-6


def test_max_pooling_shares_a_tied_windows_gradient():
    """A blank window convolves to one value four times: its gradient is shared, 1/4 each, in training
    and at inference alike (it was once sent whole to all four)."""
    pool = MaxPool2D(2)
    pool.build((2, 2, 1))
    x = np.array([[[[1.0], [1.0]], [[1.0], [0.0]]]])  # three inputs tie for the maximum
    y = pool.forward(x, training=True)
    dy = np.ones_like(y) * 6
    expected = np.array([2.0, 2.0, 2.0, 0.0]).reshape(x.shape)
    np.testing.assert_allclose(pool.backward(dy), expected)
    np.testing.assert_allclose(pool.input_gradient(dy, x, y), expected)


@pytest.mark.parametrize("layers", [[784, 6, 5, 10], CNN], ids=["dense", "cnn"])
def test_the_attribution_gradient_matches_finite_differences(layers):
    """d(z_answer - z_versus)/dx for every one of the 784 pixels, on a whole small network in float64."""
    rng = np.random.default_rng(5)
    net = _random_network(layers, rng)
    x = rng.uniform(0, 1, 784)
    e = inside.explain(net, x)
    direction = np.zeros(10)
    direction[e.answer], direction[e.versus] = 1, -1
    numeric = _numeric(lambda: float(net.logits(x[None])[0] @ direction), x)
    assert _rel(e.gradient, numeric) < 1e-6
    assert e.outputs[-1][e.answer] >= e.outputs[-1][e.versus] >= np.delete(e.outputs[-1], e.answer).max()


@pytest.mark.parametrize("name", ["seed", "default", "cnn"])
def test_the_activations_are_the_forward_pass(name, mnist_test):
    """Every layer's activations in the trace, passed on through the rest of the network, give the logits
    the network answers with; and the last is those logits."""
    net, _ = load(f"weights/{name}.npz")
    x = mnist_test.x[7] / np.float32(255)
    e = inside.explain(net, x)
    assert len(e.outputs) == len(net.layers) + 1
    np.testing.assert_allclose(e.outputs[-1], net.logits(x[None])[0], rtol=1e-5, atol=1e-5)
    for i in range(len(net.layers)):
        a = e.outputs[i + 1][None]
        for layer in net.layers[i + 1 :]:
            a = layer.forward(a, training=False)
        np.testing.assert_allclose(a[0], e.outputs[-1], rtol=1e-4, atol=1e-4)
    assert int(np.argmax(net.predict_proba(x[None]))) == e.answer


def test_unit_sums_add_up_to_the_units_value(mnist_test):
    for name in ("seed", "default", "cnn"):
        net, _ = load(f"weights/{name}.npz")
        e = inside.explain(net, mnist_test.x[11] / np.float32(255))
        for layer in [i for i, lay in enumerate(net.layers) if isinstance(lay, Dense)]:
            for unit in (0, net.layers[layer].units - 1):
                s = inside.unit_sum(net, e.outputs, layer, unit)
                total = sum(w * x for _, w, x in s.terms) + s.rest + s.bias
                assert total == pytest.approx(s.value, rel=1e-4, abs=1e-4)
                assert len(s.terms) + s.rest_count == net.layers[layer].in_shape[0]
                products = [abs(w * x) for _, w, x in s.terms]
                assert products == sorted(products, reverse=True)
    with pytest.raises(ValueError, match="not a dense layer"):
        inside.unit_sum(net, e.outputs, 0, 0)


def test_the_seeds_ten_templates_are_the_rows_of_w1(mnist_test):
    net, _ = load("weights/seed.npz")
    p = seed.load("weights/seed.npz")
    e = inside.explain(net, mnist_test.x[0] / np.float32(255))
    assert e.picture_layer == 0 and sorted(e.picture_units) == list(range(10))
    for picture, unit in zip(e.pictures, e.picture_units, strict=True):
        np.testing.assert_array_equal(picture, p.W1[unit].reshape(28, 28))
    hidden = e.outputs[1]  # Z1: the most active unit comes first
    assert hidden[e.picture_units[0]] == hidden.max()


def test_the_cnns_pictures_are_its_first_filters(mnist_test):
    net, _ = load("weights/cnn.npz")
    e = inside.explain(net, mnist_test.x[0] / np.float32(255))
    W = net.layers[0].params["W"]  # (5*5*1, 16)
    assert e.pictures.shape == (16, 5, 5)
    for picture, unit in zip(e.pictures, e.picture_units, strict=True):
        np.testing.assert_array_equal(picture, W[:, unit].reshape(5, 5))


def test_occlusion_is_the_gap_lost_by_erasing_each_patch(mnist_test):
    net, _ = load("weights/cnn.npz")
    x = mnist_test.x[3] / np.float32(255)
    e = inside.explain(net, x)
    gap = lambda img: float(net.logits(img.reshape(1, -1))[0] @ np.eye(10)[[e.answer, e.versus]].T @ [1, -1])  # noqa: E731
    occ = e.occlusion.reshape(28, 28)
    for i, j in [(8, 12), (16, 12), (0, 0)]:
        erased = x.reshape(28, 28).copy()
        erased[i : i + 4, j : j + 4] = 0
        assert occ[i, j] == pytest.approx(gap(x) - gap(erased), abs=1e-3)
    assert occ[0, 0] == 0  # a blank corner changes nothing


def _pixels(mnist_test, k):
    return {"pixels": mnist_test.x[k].tolist(), "scale": "byte"}


def test_explain_answers_with_every_layer_and_stays_small(client, mnist_test):
    r = client.post("/explain", json=_pixels(mnist_test, 4))
    assert r.status_code == 200, r.text
    assert len(r.content) < 100_000
    body = r.json()
    predicted = client.post("/predict", json=_pixels(mnist_test, 4)).json()
    assert body["prediction"]["digit"] == predicted["digit"] == body["attribution"]["answer"]
    assert body["prediction"]["probabilities"] == pytest.approx(predicted["probabilities"])
    net, _ = load("weights/cnn.npz")
    e = inside.explain(net, mnist_test.x[4] / np.float32(255))
    assert [layer["shape"] for layer in body["layers"]] == [list(a.shape) for a in e.outputs[1:]]
    for layer, out in zip(body["layers"], e.outputs[1:], strict=True):
        if "values" in layer:
            np.testing.assert_allclose(layer["values"], out, rtol=1e-5, atol=1e-6)
        else:
            step = (layer["maps"]["high"] - layer["maps"]["low"]) / 255
            np.testing.assert_allclose(decode(layer["maps"]), out, atol=step / 2 + 1e-6)
    np.testing.assert_allclose(decode(body["input"]).ravel(), mnist_test.x[4] / 255, atol=0.5 / 255 + 1e-6)
    grad = decode(body["attribution"]["gradient"])
    step = 2 * body["attribution"]["gradient"]["high"] / 255
    np.testing.assert_allclose(grad, e.gradient.reshape(28, 28), atol=step / 2 + 1e-5)
    assert body["first_layer"]["kind"] == "conv" and body["first_layer"]["count"] == 16
    assert body["network"].startswith("16C5-P2")


def test_explain_gives_a_dense_units_sum_on_request(client, mnist_test):
    r = client.post("/explain?layer=10&unit=3", json=_pixels(mnist_test, 4))
    s = r.json()["unit_sum"]
    total = sum(t["weight"] * t["x"] for t in s["terms"]) + s["rest"] + s["bias"]
    assert total == pytest.approx(s["value"], rel=1e-4)
    assert s["value"] == pytest.approx(r.json()["layers"][10]["values"][3], rel=1e-5)
    assert "unit_sum" not in client.post("/explain", json=_pixels(mnist_test, 4)).json()


@pytest.mark.parametrize(
    "query, message",
    [
        ("layer=0&unit=1", "not a dense layer"),
        ("layer=10&unit=256", "units 0 to 255"),
        ("layer=10", "needs both"),
        ("layer=99&unit=0", "not a dense layer"),
        ("layer=-1&unit=0", "greater than or equal"),
    ],
)
def test_explain_refuses_impossible_units_with_the_reason(client, mnist_test, query, message):
    r = client.post(f"/explain?{query}", json=_pixels(mnist_test, 4))
    assert r.status_code == 422
    assert message in r.text


def test_explain_takes_images_as_predict_does_and_refuses_blank_ones(client):
    from PIL import Image, ImageDraw

    from tests.conftest import png_bytes

    img = Image.new("L", (120, 120), 255)
    ImageDraw.Draw(img).line([(60, 15), (58, 105)], fill=0, width=12)
    r = client.post("/explain", files={"file": ("one.png", png_bytes(img), "image/png")})
    assert r.status_code == 200 and r.json()["prediction"]["digit"] == 1
    blank = client.post(
        "/explain", files={"file": ("blank.png", png_bytes(Image.new("L", (50, 50), 255)), "image/png")}
    )
    assert blank.status_code == 422 and "ink" in blank.json()["detail"]
    assert client.post("/explain", json={"image": "not base64!"}).status_code == 400


def test_explain_is_documented_with_examples(client):
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/explain"]["post"]
    assert "multipart/form-data" in op["requestBody"]["content"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Explanation")
    assert {p["name"] for p in op["parameters"]} == {"layer", "unit"}


def test_a_wide_cnn_sends_its_most_active_maps_and_long_vectors_quantised():
    """Any layer list the product can train gets a bounded explanation: of 96 feature maps the 64 most
    active, and a 5000-unit vector as bytes, both equal to the forward pass within a quantisation step."""
    from app.api.routes.explain import MAX_CHANNELS, layer_activation

    rng = np.random.default_rng(2)
    layers = [
        {"type": "conv", "filters": 96, "size": 3},
        {"type": "relu"},
        {"type": "maxpool", "size": 13},  # (2, 2, 96)
        {"type": "flatten"},
        {"type": "dense", "units": 5000},
        {"type": "relu"},
        {"type": "dense", "units": 10},
    ]
    net = Network(layers).init(rng)
    e = inside.explain(net, rng.uniform(0, 1, 784).astype(np.float32))
    conv = layer_activation(1, net.layers[1], e.outputs[2]).model_dump(exclude_none=True)
    assert conv["shape"] == [26, 26, 96] and len(conv["channels"]) == MAX_CHANNELS
    means = e.outputs[2].mean(axis=(0, 1))
    assert min(means[conv["channels"]]) >= np.sort(means)[-MAX_CHANNELS]  # the most active ones
    step = (conv["maps"]["high"] - conv["maps"]["low"]) / 255
    np.testing.assert_allclose(decode(conv["maps"]), e.outputs[2][:, :, conv["channels"]], atol=step / 2 + 1e-6)
    wide = layer_activation(4, net.layers[4], e.outputs[5]).model_dump(exclude_none=True)
    assert "values" not in wide and wide["maps"]["shape"] == [5000]
    step = (wide["maps"]["high"] - wide["maps"]["low"]) / 255
    np.testing.assert_allclose(decode(wide["maps"]), e.outputs[5], atol=step / 2 + 1e-6)

"""How the network read one input: every layer's activations, the first layer's weights as pictures, which
pixels pushed toward the answer rather than the runner-up, and one dense unit's sum term by term.

All of it comes from the network itself at inference (Network.trace, Network.input_gradient): nothing
here trains, keeps state or changes the layers, so a server can explain while it answers.

Three maps over the 28x28 input answer "why a 4 and not a 9?", each positive where a pixel pushed toward
the answer and negative where it pushed toward the runner-up:
- gradient: d(z_a - z_b)/dx, how adding ink at a pixel would move the logit gap (blank pixels too);
- contribution: gradient * x, the ink that is there, weighed (for the seed's one hidden ReLU layer
  with no unit switching on or off, the contributions and the biases' share add up to the gap);
- occlusion: how much the gap falls when a 4x4 patch of the input is erased, measured with the network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.layers import Conv2D, Dense, Layer, MaxPool2D
from model.network import Network
from model.spec import SIDE

PATCH = 4  # occlusion patch side: 7x7 patches over 28x28, one forward pass of at most 49 images
MAX_PICTURES = 32  # first-layer units or filters shown: the most active ones for this input
TOP_TERMS = 12  # a dense unit's sum: its largest terms w*x, the rest added up


@dataclass(frozen=True)
class Explanation:
    outputs: list[np.ndarray]  # the trace of one input: [input, layer 0's output, ..., logits], batch axis gone
    answer: int  # the largest logit (the answer's digit: calibration divides every logit alike)
    versus: int  # the runner-up
    gradient: np.ndarray  # (n_inputs,) d(z_answer - z_versus) / d input
    occlusion: np.ndarray  # (n_inputs,) the gap's fall when each pixel's patch is erased
    picture_layer: int  # the first layer with weights (a convolution or a dense layer)
    pictures: np.ndarray  # (n, h, w) its weights as images, most active units first
    picture_units: list[int]  # which units (or filters) those are

    @property
    def contribution(self) -> np.ndarray:
        return self.gradient * self.outputs[0].reshape(-1)


@dataclass(frozen=True)
class UnitSum:
    """z = sum_j w_j x_j + b for one dense unit: its largest terms (input index, weight, input), the rest's
    sum and count, the bias and the value the forward pass computed."""

    layer: int
    unit: int
    terms: list[tuple[int, float, float]]
    rest: float
    rest_count: int
    bias: float
    value: float


def explain(network: Network, x: np.ndarray) -> Explanation:
    """x (n_inputs,) in [0, 1] -> the explanation of the network's answer for it."""
    outputs = [a[0] for a in network.trace(x.reshape(1, -1))]
    logits = outputs[-1]
    versus, answer = (int(i) for i in np.argsort(logits)[-2:])
    direction = np.zeros((1, len(logits)), network.dtype)
    direction[0, answer], direction[0, versus] = 1, -1
    gradient = network.input_gradient([a[None] for a in outputs], direction)[0]
    first, units, pictures = first_layer_pictures(network, outputs)
    gaps = occlusion(network, x, answer, versus)
    return Explanation(outputs, answer, versus, gradient, gaps, first, pictures, units)


def occlusion(network: Network, x: np.ndarray, answer: int, versus: int, patch: int = PATCH) -> np.ndarray:
    """For each patch of the 28x28 input that holds ink, the logit gap z_answer - z_versus minus the gap
    with that patch erased; every pixel of a patch gets its patch's value (blank patches change nothing)."""
    image = x.reshape(28, 28)
    corners = [
        (i, j) for i in range(0, 28, patch) for j in range(0, 28, patch) if image[i : i + patch, j : j + patch].any()
    ]
    erased = np.repeat(image[None], len(corners) + 1, axis=0)  # row 0 stays whole
    for k, (i, j) in enumerate(corners, 1):
        erased[k, i : i + patch, j : j + patch] = 0
    logits = network.logits(erased.reshape(len(erased), -1))
    gaps = logits[:, answer] - logits[:, versus]
    out = np.zeros((28, 28), np.float32)
    for k, (i, j) in enumerate(corners, 1):
        out[i : i + patch, j : j + patch] = gaps[0] - gaps[k]
    return out.reshape(-1)


def first_layer_pictures(network: Network, outputs: list[np.ndarray]) -> tuple[int, list[int], np.ndarray]:
    """The first weighted layer's index, and its units as images, at most MAX_PICTURES, the most active for this input
    first: a dense unit's 784 weights as 28x28 (the seed's ten hidden units are ten templates), a
    convolution's filters as KxK (the mean over input channels, should the first have several)."""
    i, layer = next((i, lay) for i, lay in enumerate(network.layers) if isinstance(lay, Conv2D | Dense))
    W = layer.params["W"]
    activity = outputs[i + 1].reshape(-1, W.shape[1]).mean(axis=0)  # (units,): one value, or a map's mean
    order = [int(u) for u in np.argsort(-activity, kind="stable")[:MAX_PICTURES]]
    if isinstance(layer, Conv2D):
        K = layer.size
        pictures = W.reshape(K, K, layer.channels, layer.filters).mean(axis=2).transpose(2, 0, 1)
    else:
        pictures = W.T.reshape(-1, SIDE, SIDE)  # every network here reads 784-pixel images
    return i, order, pictures[order]


def unit_sum(network: Network, outputs: list[np.ndarray], layer: int, unit: int, top: int = TOP_TERMS) -> UnitSum:
    """The sum that gives dense unit `unit` of layer `layer` its value for the traced input; ValueError when
    the layer is not dense or the unit does not exist."""
    if not 0 <= layer < len(network.layers) or not isinstance(network.layers[layer], Dense):
        dense = [i for i, lay in enumerate(network.layers) if isinstance(lay, Dense)]
        raise ValueError(f"layer {layer} is not a dense layer; the dense layers are {dense}")
    d = network.layers[layer]
    if not 0 <= unit < d.units:
        raise ValueError(f"layer {layer} has units 0 to {d.units - 1}, not {unit}")
    x = outputs[layer].reshape(-1).astype(np.float64)
    w = d.params["W"][:, unit].astype(np.float64)
    products = w * x  # (n_in,)
    largest = np.argsort(-np.abs(products), kind="stable")[:top]
    largest = largest[products[largest] != 0]  # inputs of 0 add nothing: left out of the terms shown
    rest = np.ones(len(x), bool)
    rest[largest] = False
    return UnitSum(
        layer,
        unit,
        [(int(j), float(w[j]), float(x[j])) for j in largest],
        float(products[rest].sum()),
        int(rest.sum()),
        float(d.params["b"][unit]),
        float(outputs[layer + 1].reshape(-1)[unit]),
    )


def describe_layer(layer: Layer) -> str:
    """A layer in words, e.g. "convolution 5x5, 16 filters"."""
    if isinstance(layer, Conv2D):
        return f"convolution {layer.size}x{layer.size}, {layer.filters} filters"
    if isinstance(layer, MaxPool2D):
        return f"max pooling {layer.size}x{layer.size}"
    if isinstance(layer, Dense):
        return f"dense, {layer.units} units"
    names = {"relu": "ReLU", "batchnorm": "batch norm", "flatten": "flatten", "dropout": "dropout (off when answering)"}
    return names.get(layer.kind, layer.kind)

"""The one network type: a list of layers (model.layers), as micrograd's `nn.py` and every framework.

A card or a configuration describes it in one of two ways:
- the sizes of a dense stack, `[784, 10, 10]`: the short form, read as dense, ReLU, dense, ... with
  vectors of sizes[0] in and sizes[-1] out (the seed, the MLPs and the not-a-digit detector);
- a list of layer objects, `[{"type": "conv", "filters": 16, "size": 5}, ...]`: 28x28x1 images in,
  ten logits out (the CNN).

Inputs always arrive as (m, 784) rows and are seen in the first layer's shape. The maths of each
layer is in model.layers; the seed network's equations, in the tutorial's own notation, are in
model.seed. Every parameter, gradient and state array lives in one flat vector (`params`,
`grads`, `state`) of which each layer holds views, so an optimizer updates them all in a few ufunc
calls.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from model.functional import softmax_, softmax_cross_entropy_
from model.layers import MAX_UNITS, Conv2D, Dense, Dropout, Layer, MaxPool2D, ReLU, Shape, from_spec
from model.spec import N_CLASSES, SIDE

IMAGE = (SIDE, SIDE, 1)
INIT_SCHEMES = ("he", "uniform")  # He for ReLU stacks; U[-0.5, 0.5) as the seed network did
DTYPES = ("float32", "float64")
MAX_PARAMS = 50_000_000  # 200 MB of float32: more is a damaged description, not a network


class BatchResult(NamedTuple):
    loss: float  # mean cross-entropy over the batch
    probabilities: np.ndarray  # (m, k), a view of a training buffer: valid until the next backprop


def is_sizes(layers: Any) -> bool:
    """The short form: a dense stack's sizes rather than a list of layer objects."""
    return isinstance(layers, list | tuple) and all(isinstance(n, int) and not isinstance(n, bool) for n in layers)


def _dense_stack(sizes: Sequence[int]) -> list[Layer]:
    if len(sizes) < 2 or not all(1 <= n <= MAX_UNITS for n in sizes):
        raise ValueError(f"layer sizes must be at least two integers from 1 to {MAX_UNITS}, got {list(sizes)}")
    layers: list[Layer] = []
    for n in sizes[1:]:
        layers += [Dense(n), ReLU()]
    return layers[:-1]  # no ReLU on the logits


def build_layers(description: Any, outputs: int = N_CLASSES) -> tuple[list[Layer], Shape]:
    """The layers a card describes and the input shape they read, shapes checked from input to the
    logits; raises ValueError saying what is impossible. Allocates nothing, so it also validates."""
    if is_sizes(description) and description:
        layers, shape = _dense_stack(description), (description[0],)
        outputs = description[-1]
    elif isinstance(description, list | tuple) and description:
        layers, shape = [from_spec(s) for s in description], IMAGE
    else:
        raise ValueError(f"layers must be a non-empty list of sizes or of layer objects, got {description!r}")
    in_shape = shape
    for i, layer in enumerate(layers):
        try:
            shape = layer.build(shape)
        except ValueError as e:
            raise ValueError(f"layer {i} ({layer.kind}): {e}") from None
    first, second = layers[0], layers[1] if len(layers) > 1 else None
    if isinstance(first, Conv2D) and isinstance(second, MaxPool2D) and first.channels == 1:
        first.pool_order = second.size  # its rows laid out for the pooling (Conv2D.pool_order)
    if not isinstance(layers[-1], Dense) or shape != (outputs,):
        raise ValueError(f"the last layer must be dense with {outputs} units (the logits), got {description[-1]!r}")
    n_params = sum(int(np.prod(s)) for layer in layers for s in layer.param_shapes().values())
    if n_params > MAX_PARAMS:
        raise ValueError(f"{n_params:,} parameters is more than the {MAX_PARAMS:,} a network may have")
    return layers, in_shape


def _flat(shapes: list[dict[str, Shape]], dtype: np.dtype) -> np.ndarray:
    """One zeroed vector with room for every layer's arrays, in order."""
    return np.zeros(sum(int(np.prod(s)) for named in shapes for s in named.values()), dtype)


def _views(flat: np.ndarray, shapes: list[dict[str, Shape]]) -> list[dict[str, np.ndarray]]:
    """Each layer's arrays as views into the flat vector, in order."""
    views, offset = [], 0
    for named in shapes:
        views.append({})
        for name, shape in named.items():
            size = int(np.prod(shape))
            views[-1][name] = flat[offset : offset + size].reshape(shape)
            offset += size
    return views


class Network:
    def __init__(
        self,
        layers: Sequence[int] | Sequence[dict[str, Any]],
        dtype: type | np.dtype = np.float32,
        outputs: int = N_CLASSES,  # of a list of layer objects (a dense stack's sizes say their own)
    ) -> None:
        self.dtype = np.dtype(dtype)
        if self.dtype.name not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype}")
        self.sizes: list[int] | None = list(layers) if is_sizes(layers) else None
        self.layers, self.in_shape = build_layers(list(layers), outputs)
        self.n_inputs = int(np.prod(self.in_shape))
        param_shapes = [layer.param_shapes() for layer in self.layers]
        state_shapes = [layer.state_shapes() for layer in self.layers]
        self.adopt(_flat(param_shapes, self.dtype), _flat(param_shapes, self.dtype), _flat(state_shapes, self.dtype))
        self.timings: dict[str, list[float]] | None = None  # per layer forward/backward seconds, when asked
        # Training moves the layers from this one on; those before it run as at inference (fine-tuning).
        self.trainable_from = 0

    @property
    def spec(self) -> list[int] | list[dict[str, Any]]:
        """The layers as the model card writes them: the sizes of a dense stack, else layer objects."""
        return list(self.sizes) if self.sizes else [layer.spec() for layer in self.layers]

    @property
    def n_params(self) -> int:
        return int(self.params.size)

    def decayed(self) -> list[np.ndarray]:
        """What weight decay shrinks, by nanoGPT's one rule: every parameter of two or more dimensions
        (kernels and weight matrices), never the biases and batch norm's scales and shifts."""
        trained = self.layers[self.trainable_from :]
        return [p for layer in trained for p in layer.params.values() if p.ndim >= 2]

    def named_params(self) -> dict[str, np.ndarray]:
        """Arrays by the names the weights file stores them under: W0, b0, W1, b1, ... for a dense stack
        given by its sizes; L0.W, L0.b, L2.mean, ... (layer index, array) for a list of layers."""
        if self.sizes:
            dense = [layer for layer in self.layers if isinstance(layer, Dense)]
            return {f"{k}{i}": layer.params[k] for i, layer in enumerate(dense) for k in ("W", "b")}
        return {f"L{i}.{k}": a for i, layer in enumerate(self.layers) for k, a in (layer.params | layer.state).items()}

    def init(self, rng: np.random.Generator, scheme: str = "he") -> Network:
        if scheme not in INIT_SCHEMES:
            raise ValueError(f"unknown init scheme {scheme!r}; choose from {INIT_SCHEMES}")
        for layer in self.layers:
            layer.init(rng, scheme)
            if isinstance(layer, Dropout):
                layer.rng = rng  # masks from the same generator, so a seed reproduces a run
        return self

    def adopt(self, params: np.ndarray, grads: np.ndarray, state: np.ndarray) -> None:
        """Make these flat vectors the network's, as they are, and point every layer's views into them:
        a network can then share its weights with a twin, or keep them in memory other processes see."""
        for name, flat in (("params", params), ("grads", grads), ("state", state)):
            shapes = [layer.state_shapes() if name == "state" else layer.param_shapes() for layer in self.layers]
            if flat.shape != (sum(int(np.prod(s)) for named in shapes for s in named.values()),):
                raise ValueError(f"{name} must be a vector of this network's size, got shape {flat.shape}")
            for layer, views in zip(self.layers, _views(flat, shapes), strict=True):
                setattr(layer, name, views)
            setattr(self, name, flat)

    def replica(self) -> Network:
        """A twin that shares this network's weights (the very arrays, so an optimizer step moves both)
        but has gradients, state and buffers of its own: a part of a batch can run on it
        (model.parallel)."""
        twin = Network(self.spec, self.dtype)
        twin.adopt(self.params, twin.grads, self.state.copy())
        twin.trainable_from = self.trainable_from
        return twin

    # ---- forward -------------------------------------------------------------------------------

    def _as_input(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_inputs:
            raise ValueError(f"expected input of shape (m, {self.n_inputs}), got {X.shape}")
        return np.ascontiguousarray(X, dtype=self.dtype).reshape(len(X), *self.in_shape)

    def _forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        for i, layer in enumerate(self.layers):
            started = time.perf_counter()
            x = layer.forward(x, training and i >= self.trainable_from)
            self._time(i, "forward", started)
        return x

    def _time(self, i: int, way: str, started: float) -> None:
        if self.timings is not None:
            key = f"{i}:{self.layers[i].kind}:{way}"
            self.timings.setdefault(key, []).append(time.perf_counter() - started)

    def logits(self, X: np.ndarray) -> np.ndarray:
        return self._forward(self._as_input(X), training=False)

    def predict_proba(self, X: np.ndarray, chunk: int = 500, temperature: float | np.ndarray = 1.0) -> np.ndarray:
        """Class probabilities (m, k) of softmax(logits / temperature), one temperature or one per row.
        Thread-safe: inference keeps no state in the layers. Chunks of 500 keep a convolution's im2col
        copies under ~80 MB."""
        X = self._as_input(X)
        out = np.empty((len(X), self.layers[-1].units), self.dtype)
        per_row = np.ndim(temperature) == 1
        for start in range(0, len(X), chunk):
            z = self._forward(X[start : start + chunk], training=False)
            if per_row:
                z /= np.asarray(temperature, z.dtype)[start : start + len(z), None]
            elif temperature != 1.0:
                z *= 1 / temperature
            out[start : start + len(z)] = softmax_(z)
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)

    # ---- looking inside (model.explain) ----------------------------------------------------------

    def trace(self, X: np.ndarray) -> list[np.ndarray]:
        """Every array of the forward pass at inference: [the input in the first layer's shape, layer 0's
        output, ..., the logits], len(layers) + 1 arrays. Thread-safe, as predict_proba."""
        outputs = [self._as_input(X)]
        for layer in self.layers:
            outputs.append(layer.forward(outputs[-1], training=False))
        return outputs

    def input_gradient(self, outputs: list[np.ndarray], dlogits: np.ndarray) -> np.ndarray:
        """The backward pass at inference over a trace: d(sum(dlogits * logits)) / d(input), (m, n_inputs).
        With dlogits one-hot at a and -1 at b it is how each pixel moves the logit gap z_a - z_b."""
        dy = np.asarray(dlogits, self.dtype)
        for i in range(len(self.layers) - 1, -1, -1):
            dy = self.layers[i].input_gradient(dy, outputs[i], outputs[i + 1])
        return dy.reshape(len(dy), -1)

    # ---- training ------------------------------------------------------------------------------

    def backprop(self, X: np.ndarray, y: np.ndarray) -> BatchResult:
        """Forward and backward pass over a batch: fills self.grads with the batch-mean gradients.

        Returns the batch's mean loss and probabilities, which the training loop's statistics use."""
        x = self._as_input(X)
        m = len(x)  # the batch's own size, never a global
        P = self._forward(x, training=True)
        loss = softmax_cross_entropy_(P, y)  # P becomes softmax(logits) in place
        dZ = P.copy()  # dLoss/dlogits = (P - Y) / m, with Y one-hot
        dZ[np.arange(m), y] -= 1
        dZ *= 1.0 / m
        for i in range(len(self.layers) - 1, self.trainable_from - 1, -1):
            started = time.perf_counter()
            dZ = self.layers[i].backward(dZ, need_dx=i > self.trainable_from)  # none for the input pixels
            self._time(i, "backward", started)
        return BatchResult(loss, P)

"""A network as a list of layers (model.layers), e.g. a CNN; the card's `layers` describe it.

It answers to the same calls as the dense model.network.Network (backprop, predict_proba, params
and grads as flat vectors), so the training loop, the optimizers, calibration and serving take
either. Inputs arrive as (m, 784) rows like everywhere else and are seen as (m, 28, 28, 1) images.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from model.functional import softmax_, softmax_cross_entropy_
from model.layers import Dense, Dropout, Layer, from_spec
from model.network import DTYPES, BatchResult, Network
from model.spec import N_CLASSES, N_PIXELS, SIDE

IMAGE = (SIDE, SIDE, 1)
INIT_SCHEMES = ("he",)
MAX_PARAMS = 50_000_000  # 200 MB of float32: more is a damaged description, not a network


def build_layers(specs: Any) -> list[Layer]:
    """The layers a card describes, shapes checked from the 28x28 image to the 10 logits; raises
    ValueError saying what is impossible. Allocates nothing, so it also validates configurations."""
    if not isinstance(specs, list | tuple) or not specs:
        raise ValueError(f"layers must be a non-empty list of layer objects, got {specs!r}")
    layers = [from_spec(s) for s in specs]
    shape: tuple[int, ...] = IMAGE
    for i, layer in enumerate(layers):
        try:
            shape = layer.build(shape)
        except ValueError as e:
            raise ValueError(f"layer {i} ({layer.kind}): {e}") from None
    if not isinstance(layers[-1], Dense) or shape != (N_CLASSES,):
        raise ValueError(f"the last layer must be dense with {N_CLASSES} units (the logits), got {specs[-1]!r}")
    n_params = sum(int(np.prod(s)) for layer in layers for s in layer.param_shapes().values())
    if n_params > MAX_PARAMS:
        raise ValueError(f"{n_params:,} parameters is more than the {MAX_PARAMS:,} a network may have")
    return layers


def _flat(shapes: list[dict[str, tuple[int, ...]]], dtype: np.dtype) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """One zeroed vector holding every layer's arrays in order, and each layer's views into it."""
    flat = np.zeros(sum(int(np.prod(s)) for named in shapes for s in named.values()), dtype)
    views, offset = [], 0
    for named in shapes:
        views.append({})
        for name, shape in named.items():
            size = int(np.prod(shape))
            views[-1][name] = flat[offset : offset + size].reshape(shape)
            offset += size
    return flat, views


def is_dense(layers: Any) -> bool:
    """Sizes of a dense stack (model.network), rather than a list of layer objects."""
    return isinstance(layers, list) and all(isinstance(n, int) and not isinstance(n, bool) for n in layers)


class ConvNet:
    def __init__(self, specs: Sequence[dict[str, Any]], dtype: type | np.dtype = np.float32) -> None:
        self.dtype = np.dtype(dtype)
        if self.dtype.name not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype}")
        self.layers: list[Layer] = build_layers(specs)
        self._allocate()
        self.timings: dict[str, list[float]] | None = None  # per layer forward/backward seconds, when asked

    def _allocate(self) -> None:
        """One flat vector for all parameters, one for their gradients and one for the layers' state
        (never optimised); each layer gets views into them."""
        param_shapes = [layer.param_shapes() for layer in self.layers]
        self.params, params = _flat(param_shapes, self.dtype)
        self.grads, grads = _flat(param_shapes, self.dtype)
        self.state, state = _flat([layer.state_shapes() for layer in self.layers], self.dtype)
        for layer, p, g, st in zip(self.layers, params, grads, state, strict=True):
            layer.params, layer.grads, layer.state = p, g, st

    @property
    def spec(self) -> list[dict[str, Any]]:
        """The layer list as the model card writes it."""
        return [layer.spec() for layer in self.layers]

    @property
    def n_params(self) -> int:
        return int(self.params.size)

    def decayed(self) -> list[np.ndarray]:
        """The weights (kernels and matrices) that weight decay shrinks, never the biases."""
        return [W for layer in self.layers for W in layer.decayed()]

    def named_params(self) -> dict[str, np.ndarray]:
        """Arrays by the names the weights file stores them under: L0.W, L0.b, L3.W, ..., and the
        layers' state (L2.mean, L2.var of a batch norm)."""
        return {f"L{i}.{k}": a for i, layer in enumerate(self.layers) for k, a in (layer.params | layer.state).items()}

    def init(self, rng: np.random.Generator, scheme: str = "he") -> ConvNet:
        if scheme not in INIT_SCHEMES:
            raise ValueError(f"a ConvNet initialises with one of {INIT_SCHEMES}, got {scheme!r}")
        for layer in self.layers:
            layer.init(rng)
        return self

    def set_rng(self, rng: np.random.Generator) -> None:
        """The generator dropout masks are drawn from, so that a seed reproduces a run."""
        for layer in self.layers:
            if isinstance(layer, Dropout):
                layer.rng = rng

    # ---- forward -------------------------------------------------------------------------------

    def _as_images(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != N_PIXELS:
            raise ValueError(f"expected input of shape (m, {N_PIXELS}), got {X.shape}")
        return np.ascontiguousarray(X, dtype=self.dtype).reshape(len(X), *IMAGE)

    def _forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        for i, layer in enumerate(self.layers):
            started = time.perf_counter()
            x = layer.forward(x, training)
            self._time(i, "forward", started)
        return x

    def _time(self, i: int, way: str, started: float) -> None:
        if self.timings is not None:
            key = f"{i}:{self.layers[i].kind}:{way}"
            self.timings.setdefault(key, []).append(time.perf_counter() - started)

    def logits(self, X: np.ndarray) -> np.ndarray:
        return self._forward(self._as_images(X), training=False)

    def predict_proba(self, X: np.ndarray, chunk: int = 500, temperature: float = 1.0) -> np.ndarray:
        """Class probabilities (m, 10) of softmax(logits / temperature). Thread-safe: inference keeps
        no state in the layers. Chunks of 500 keep the im2col copies under ~80 MB."""
        X = self._as_images(X)
        out = np.empty((len(X), N_CLASSES), self.dtype)
        for start in range(0, len(X), chunk):
            z = self._forward(X[start : start + chunk], training=False)
            if temperature != 1.0:
                z *= 1 / temperature
            out[start : start + len(z)] = softmax_(z)
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)

    # ---- training ------------------------------------------------------------------------------

    def backprop(self, X: np.ndarray, y: np.ndarray) -> BatchResult:
        """Forward and backward pass over a batch: fills self.grads with the batch-mean gradients."""
        x = self._as_images(X)
        m = len(x)
        P = self._forward(x, training=True)
        loss = softmax_cross_entropy_(P, y)  # P becomes softmax(logits) in place
        dZ = P.copy()  # dLoss/dlogits = (P - Y) / m, with Y one-hot
        dZ[np.arange(m), y] -= 1
        dZ *= 1.0 / m
        for i in range(len(self.layers) - 1, -1, -1):
            started = time.perf_counter()
            dZ = self.layers[i].backward(dZ, need_dx=i > 0)  # no gradient for the input pixels
            self._time(i, "backward", started)
        return BatchResult(loss, P)


Classifier = Network | ConvNet  # what answers digits: a dense stack given by its sizes, or a list of layers


def make_network(layers: list, dtype: type | np.dtype = np.float32) -> Classifier:
    """The network a card's or a configuration's `layers` describe (not initialised)."""
    return Network(layers, dtype) if is_dense(layers) else ConvNet(layers, dtype)

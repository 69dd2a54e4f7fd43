"""A stack of dense layers: ReLU hidden layers, a softmax output, cross-entropy loss.

The seed network, in its own column-wise notation (X is 784 x m):

    Z1 = W1 X + b1      A1 = ReLU(Z1)      Z2 = W2 A1 + b2      A2 = softmax(Z2)
    dZ2 = A2 - Y        dW2 = dZ2 A1^T / m  db2 = sum_over_batch(dZ2) / m
    dZ1 = W2^T dZ2 * ReLU'(Z1)              dW1 = dZ1 X^T / m   db1 = sum_over_batch(dZ1) / m

Here rows are samples, so every product is the transpose of the seed's: Z = A_prev @ W + b with W
of shape (n_in, n_out). Any number of layers follows the same two lines per layer.

Speed comes from keeping every parameter, gradient and activation in preallocated float32 arrays
and sending every product to BLAS with `out=`: the parameters live in one flat vector (`params`)
with each W and b a view into it, so an optimizer updates all of them in a few ufunc calls.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from model.functional import softmax_, softmax_cross_entropy_

INIT_SCHEMES = ("he", "uniform")
DTYPES = ("float32", "float64")


class BatchResult(NamedTuple):
    loss: float  # mean cross-entropy over the batch
    probabilities: np.ndarray  # (m, 10), a view of a training buffer: valid until the next backprop


class Network:
    def __init__(self, sizes: Sequence[int], dtype: type | np.dtype = np.float32) -> None:
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"layer sizes must be at least two positive integers, got {sizes}")
        self.sizes = sizes
        self.dtype = np.dtype(dtype)
        if self.dtype.name not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype}")
        shapes = [(n_in, n_out) for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)]
        total = sum(i * o + o for i, o in shapes)
        self.params = np.zeros(total, self.dtype)
        self.grads = np.zeros(total, self.dtype)
        self.W: list[np.ndarray] = []
        self.b: list[np.ndarray] = []
        self.dW: list[np.ndarray] = []
        self.db: list[np.ndarray] = []
        offset = 0
        for n_in, n_out in shapes:
            for store, grad_store, shape in (
                (self.W, self.dW, (n_in, n_out)),
                (self.b, self.db, (n_out,)),
            ):
                size = int(np.prod(shape))
                store.append(self.params[offset : offset + size].reshape(shape))
                grad_store.append(self.grads[offset : offset + size].reshape(shape))
                offset += size
        self._train_buffers: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        self._local = threading.local()  # inference buffers, one set per thread

    @property
    def n_layers(self) -> int:
        return len(self.W)

    @property
    def n_params(self) -> int:
        return int(self.params.size)

    @property
    def spec(self) -> list[int]:
        """The layers as the model card writes them: the sizes."""
        return list(self.sizes)

    def decayed(self) -> list[np.ndarray]:
        """The weights that weight decay shrinks, never the biases."""
        return self.W

    def named_params(self) -> dict[str, np.ndarray]:
        """Arrays by the names the weights file stores them under: W0, b0, W1, b1, ..."""
        named = {}
        for i, (W, b) in enumerate(zip(self.W, self.b, strict=True)):
            named[f"W{i}"], named[f"b{i}"] = W, b
        return named

    def init(self, rng: np.random.Generator, scheme: str = "he") -> Network:
        """He initialisation for ReLU stacks; 'uniform' is the seed network's U[-0.5, 0.5)."""
        for W, b in zip(self.W, self.b, strict=True):
            if scheme == "he":
                W[...] = rng.standard_normal(W.shape) * np.sqrt(2.0 / W.shape[0])
                b[...] = 0
            elif scheme == "uniform":
                W[...] = rng.random(W.shape) - 0.5
                b[...] = rng.random(b.shape) - 0.5
            else:
                raise ValueError(f"unknown init scheme {scheme!r}; choose from {INIT_SCHEMES}")
        return self

    # ---- forward -------------------------------------------------------------------------------

    def _forward_into(self, X: np.ndarray, acts: list[np.ndarray]) -> None:
        """Fill acts[l] with layer l's output; the last one holds the logits."""
        A = X
        last = self.n_layers - 1
        for l, (W, b) in enumerate(zip(self.W, self.b, strict=True)):
            Z = acts[l]
            np.matmul(A, W, out=Z)  # (m, n_in) @ (n_in, n_out) -> (m, n_out)
            Z += b  # b broadcast over the batch: (n_out,)
            if l < last:
                np.maximum(Z, 0, out=Z)  # A = ReLU(Z), in place
            A = Z

    def _as_input(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise ValueError(f"expected input of shape (m, {self.sizes[0]}), got {X.shape}")
        return np.ascontiguousarray(X, dtype=self.dtype)

    def _inference_buffers(self, m: int) -> list[np.ndarray]:
        cache = getattr(self._local, "cache", None)
        if cache is None or cache[0] < m:
            cache = (m, [np.empty((m, n), self.dtype) for n in self.sizes[1:]])
            self._local.cache = cache
        return [a[:m] for a in cache[1]]

    def logits(self, X: np.ndarray) -> np.ndarray:
        X = self._as_input(X)
        acts = [np.empty((len(X), n), self.dtype) for n in self.sizes[1:]]
        self._forward_into(X, acts)
        return acts[-1]

    def predict_proba(self, X: np.ndarray, chunk: int = 10_000, temperature: float = 1.0) -> np.ndarray:
        """Class probabilities (m, 10) of softmax(logits / temperature). Thread-safe: each thread reuses
        its own buffers."""
        X = self._as_input(X)
        out = np.empty((len(X), self.sizes[-1]), self.dtype)
        for start in range(0, len(X), chunk):
            part = X[start : start + chunk]
            acts = self._inference_buffers(len(part))
            self._forward_into(part, acts)
            if temperature != 1.0:
                acts[-1] *= 1 / temperature
            out[start : start + len(part)] = softmax_(acts[-1])
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)

    # ---- training ------------------------------------------------------------------------------

    def _training_buffers(self, m: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Activations acts[l] (m, n_l+1) and deltas dZ[l] of the same shapes, made once per m."""
        if m not in self._train_buffers:
            acts = [np.empty((m, n), self.dtype) for n in self.sizes[1:]]
            deltas = [np.empty((m, n), self.dtype) for n in self.sizes[1:]]
            self._train_buffers[m] = (acts, deltas)
        return self._train_buffers[m]

    def backprop(self, X: np.ndarray, y: np.ndarray) -> BatchResult:
        """Forward and backward pass over a batch: fills self.grads (so dW, db) with the batch means.

        Returns the batch's mean loss and probabilities, which the training loop's statistics use.
        """
        X = self._as_input(X)
        m = len(X)  # the batch's own size, never a global
        acts, deltas = self._training_buffers(m)
        self._forward_into(X, acts)
        P = acts[-1]
        loss = softmax_cross_entropy_(P, y)  # P = A_L = softmax(Z_L)
        # dZ_L = (A_L - Y) / m, with Y one-hot: subtract 1 at each row's label.
        dZ = deltas[-1]
        np.copyto(dZ, P)
        dZ[np.arange(m), y] -= 1
        dZ *= 1.0 / m
        for l in range(self.n_layers - 1, -1, -1):
            A_prev = X if l == 0 else acts[l - 1]
            np.matmul(A_prev.T, dZ, out=self.dW[l])  # (n_in, m) @ (m, n_out) -> (n_in, n_out)
            dZ.sum(axis=0, out=self.db[l])  # per unit, over the batch axis: (n_out,)
            if l == 0:
                break  # no gradient with respect to the input pixels
            dA = deltas[l - 1]
            np.matmul(dZ, self.W[l].T, out=dA)  # (m, n_out) @ (n_out, n_in) -> (m, n_in)
            dA[A_prev <= 0] = 0  # * ReLU'(Z_prev): A_prev > 0 exactly where Z_prev > 0
            dZ = dA
        return BatchResult(loss, P)

"""The seed network in the classic tutorial's own notation: 784 inputs, 10 ReLU units, 10 softmax outputs.

Columns are samples here, as in the tutorial: X is (784, m), W1 is (10, 784). The product code
(model.network, model.layers) keeps rows as samples, Z = X @ W + b with W of shape (n_in, n_out),
so every matrix below is the transpose of one stored in `weights/seed.npz` (W0, b0, W1, b1 there
are W1^T, b1, W2^T, b2 here). tests/test_seed.py checks that both give the same answers and the
same gradients on that file.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np


class Params(NamedTuple):
    W1: np.ndarray  # (10, 784)
    b1: np.ndarray  # (10, 1)
    W2: np.ndarray  # (10, 10)
    b2: np.ndarray  # (10, 1)


def load(path: str | Path) -> Params:
    """The seed's parameters from a weights file of the 784-10-10 network."""
    with np.load(path, allow_pickle=False) as f:
        return Params(f["W0"].T, f["b0"][:, None], f["W1"].T, f["b1"][:, None])


def ReLU(Z: np.ndarray) -> np.ndarray:  # noqa: N802 (the tutorial's name)
    return np.maximum(Z, 0)


def softmax(Z: np.ndarray) -> np.ndarray:
    e = np.exp(Z - Z.max(axis=0))  # minus each column's max: exp never overflows
    return e / e.sum(axis=0)


def forward_prop(p: Params, X: np.ndarray) -> tuple[np.ndarray, ...]:
    Z1 = p.W1 @ X + p.b1  # (10, 784) @ (784, m) + (10, 1) -> (10, m)
    A1 = ReLU(Z1)  # (10, m)
    Z2 = p.W2 @ A1 + p.b2  # (10, 10) @ (10, m) + (10, 1) -> (10, m)
    A2 = softmax(Z2)  # (10, m): each column sums to 1
    return Z1, A1, Z2, A2


def one_hot(Y: np.ndarray) -> np.ndarray:
    Y_ = np.zeros((10, Y.size))
    Y_[Y, np.arange(Y.size)] = 1
    return Y_  # (10, m)


def backward_prop(p: Params, X: np.ndarray, Y: np.ndarray) -> Params:
    """The gradients of the mean cross-entropy, in the same shapes as the parameters."""
    m = X.shape[1]
    Z1, A1, _, A2 = forward_prop(p, X)
    dZ2 = A2 - one_hot(Y)  # (10, m)
    dW2 = dZ2 @ A1.T / m  # (10, m) @ (m, 10) -> (10, 10)
    db2 = dZ2.sum(axis=1, keepdims=True) / m  # (10, 1)
    dZ1 = p.W2.T @ dZ2 * (Z1 > 0)  # (10, 10) @ (10, m) * ReLU'(Z1) -> (10, m)
    dW1 = dZ1 @ X.T / m  # (10, m) @ (m, 784) -> (10, 784)
    db1 = dZ1.sum(axis=1, keepdims=True) / m  # (10, 1)
    return Params(dW1, db1, dW2, db2)


def update_params(p: Params, grads: Params, alpha: float) -> Params:
    """One step of gradient descent: W := W - alpha dW, for every parameter."""
    return Params(*(w - alpha * dw for w, dw in zip(p, grads, strict=True)))


def get_predictions(A2: np.ndarray) -> np.ndarray:
    return A2.argmax(axis=0)  # (m,)

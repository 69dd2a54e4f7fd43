"""The maths of the network's output: softmax for answers, softmax cross-entropy for training.

Rows are samples throughout: a batch of m images is an (m, 784) array. The seed network wrote
the same equations column-wise (Z1 = W1 X + b1 with X of shape (784, m)); here that reads
Z1 = X @ W1 + b1 with W1 of shape (784, 10), the transpose of the seed's.
"""

from __future__ import annotations

import numpy as np


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax that never overflows.

    Subtracting each row's maximum first keeps exp() in (0, 1]; the seed network skipped this
    and produced inf/NaN for logits above ~88 in float32.
    """
    shifted = z - z.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def softmax_(z: np.ndarray) -> np.ndarray:
    """softmax, in place: the logits buffer (m, k) becomes the probabilities. Returns z."""
    z -= z.max(axis=1, keepdims=True)  # s = z - max(z), every entry <= 0
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)  # (m, 1), >= 1 because the max entry is exp(0)
    return z


def softmax_cross_entropy_(z: np.ndarray, labels: np.ndarray) -> float:
    """Turn logits z (m, k) into probabilities in place; return the mean loss of `labels`.

    In place because this sits on the training hot path: the logits buffer becomes A2.
    The loss uses log p_y = s_y - log(sum exp s) with s = z - max(z), which stays finite where
    log(softmax(z)) would give log(0) = -inf.
    """
    z -= z.max(axis=1, keepdims=True)  # s = z - max(z), every entry <= 0
    picked = z[np.arange(len(labels)), labels]  # s_y, (m,)
    np.exp(z, out=z)
    total = z.sum(axis=1, keepdims=True)  # (m, 1), >= 1 because the max entry is exp(0)
    z /= total
    return float(np.mean(np.log(total[:, 0]) - picked))

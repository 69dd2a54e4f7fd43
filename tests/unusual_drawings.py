"""Drawings in ways MNIST lacks (model.drawings' UNUSUAL 1, 4 and 7), for the learning-loop test and bench."""

from collections.abc import Iterator

import numpy as np

from model.drawings import STYLES, UNUSUAL, Drawing, draw


def unusual_set(n: int, seed: int, size: int = 140) -> Iterator[Drawing]:
    """n drawings in the UNUSUAL ways, the digits and canvas styles in turn."""
    rng = np.random.default_rng(seed)
    labels = sorted(UNUSUAL)
    for i in range(n):
        yield draw(labels[i % len(labels)], rng, STYLES[i % len(STYLES)], size=size, unusual=True)

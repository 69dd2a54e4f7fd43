"""The image recipe's cheap parts against the library calls they replace (model.images).

to_mnist resizes with two matrix products and to_png writes its PNG itself, both for speed (issue 24);
here each is held to what Pillow gives for the same input, so the recipe (model.spec.NORMALISATION)
is the one every model was trained and calibrated with.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from model.drawings import STYLES, draw
from model.images import BOX, INK_THRESHOLD, SIDE, ink_image, load, open_image, to_mnist, to_png


def pillow_to_mnist(ink: np.ndarray) -> np.ndarray:
    """The recipe as it was written with Pillow's resize: crop, 20 px Lanczos, centre of mass at 14, 14."""
    ink = ink / ink.max()
    ink[ink < INK_THRESHOLD] = 0
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    digit = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = digit.shape
    new_w, new_h = max(1, round(w * BOX / max(h, w))), max(1, round(h * BOX / max(h, w)))
    small = Image.fromarray(digit.astype(np.float32), mode="F").resize((new_w, new_h), Image.Resampling.LANCZOS)
    small = np.asarray(small).clip(0, 1)
    small = small / small.max()
    ys, xs = np.indices(small.shape)
    cy, cx = (ys * small).sum() / small.sum(), (xs * small).sum() / small.sum()
    top = int(np.clip(round(SIDE / 2 - cy), 0, SIDE - new_h))
    left = int(np.clip(round(SIDE / 2 - cx), 0, SIDE - new_w))
    out = np.zeros((SIDE, SIDE), np.float32)
    out[top : top + new_h, left : left + new_w] = small
    return out


def test_to_mnist_is_pillows_lanczos_on_drawings():
    rng = np.random.default_rng(0)
    for k in range(120):
        data = draw(k % 10, rng, STYLES[k % len(STYLES)]).png
        ink = ink_image(load(open_image(data)))[0]
        np.testing.assert_allclose(to_mnist(ink.copy()), pillow_to_mnist(ink.copy()), rtol=0, atol=2e-6)


@pytest.mark.parametrize("shape", [(1, 1), (1, 300), (300, 1), (7, 5), (20, 20), (21, 13), (97, 64), (640, 480)])
def test_to_mnist_is_pillows_lanczos_on_any_shape(shape):
    rng = np.random.default_rng(sum(shape))
    ink = (rng.random(shape) * (rng.random(shape) > 0.6)).astype(np.float32)
    ink.flat[0] = 1  # some ink, whatever the draw
    np.testing.assert_allclose(to_mnist(ink.copy()), pillow_to_mnist(ink.copy()), rtol=0, atol=2e-6)


def test_to_png_is_read_back_by_pillow_as_the_rounded_pixels():
    rng = np.random.default_rng(1)
    for pixels in (np.zeros((28, 28)), np.ones((28, 28)), rng.random((28, 28)), rng.normal(0.5, 1, (28, 28))):
        img = Image.open(io.BytesIO(to_png(pixels.astype(np.float32))))
        img.load()  # a bad checksum or a short stream fails here
        assert img.format == "PNG" and img.mode == "L" and img.size == (28, 28)
        np.testing.assert_array_equal(np.asarray(img), np.round(np.clip(pixels.astype(np.float32), 0, 1) * 255))

"""What the network reads and answers: the one home of the input spec and its conversion.

MNIST images are 28x28 bytes, 0 = background and 255 = ink; the network reads them flattened to 784
values scaled to [0, 1], and answers 10 class scores. A served image must be made the way MNIST was
made (crop to the ink, longer side 20 px, centre of mass at the centre): that recipe is named
`NORMALISATION`, recorded in every model card, and checked before a model is served.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SIDE = 28
N_PIXELS = SIDE * SIDE  # 784
N_CLASSES = 10
NORMALISATION = "mnist-v1"  # the image recipe of model.images; a new recipe gets a new name


def from_pixels(
    x: np.ndarray, dtype: type | np.dtype = np.float32, *, max_value: float = 255, out: np.ndarray | None = None
) -> np.ndarray:
    """Pixel values in 0..max_value -> the network's input scale, 0 = background and 1 = full ink."""
    return np.multiply(x, np.asarray(1 / max_value, dtype), out=out, dtype=dtype, casting="unsafe")


@dataclass(frozen=True)
class InputSpec:
    """The input a model was trained on, as its card records it."""

    pixels: str = "value / 255, 0 = background, 1 = ink"
    shape: list[int] = field(default_factory=lambda: [SIDE, SIDE])
    preprocess: str = NORMALISATION


INPUT_SPEC = InputSpec()

"""Digits as people send them that the pad's pen does not make: marker and hairline pens, and images of
low resolution (a scan at a few pixels a digit, a thumbnail, another dataset's 8x8 bitmaps).

The detector learnt that a digit's strokes are as wide as the pad's pen, so a marker's digit looked
"odd" or "not a digit" to it, and the classifier was seldom sure of a digit 8 px tall. Each family
here has a fitted recipe, made of MNIST's training digits, which calibration, the detector and the
classifier may learn from, and a held-out recipe, made of other digits by other means, which they
never see and which only measures:

- marker: fitted, MNIST's training digits thinned and redrawn with a pen 9-30% of their height; held
  out, the pad's templates drawn with a pen of 12-20% of the pad.
- hairline: fitted, the same redrawn 1-2 px wide; held out, the templates with a 1-2.5% pen.
- low-res: fitted, 6-7 px a side (the digit's box) or 10-16 (the box or MNIST's frame), any
  resampling, 4 to 256 grey levels, as is or smoothly enlarged; held out, MNIST's test digits at 8 px
  a side made as UCI's optdigits were (a 32x32 bitmap counted in 4x4 blocks, 17 levels), as is or
  enlarged 4x in blocks.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
from PIL import Image

from model.drawings import STYLES, draw, export
from model.photo_set import redraw

FITTED = ("marker", "hairline", "low-res")
HELD_OUT = ("marker", "hairline", "low-res 8x8", "low-res 8x8 enlarged")
PAD = 280  # the pad a redrawn digit is placed on
RESAMPLING = (Image.Resampling.BOX, Image.Resampling.BILINEAR, Image.Resampling.LANCZOS)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _on_pad(coverage: np.ndarray, rng: np.random.Generator) -> bytes:
    """A coverage array (h, w) in [0, 1] placed anywhere on the pad, in one of its export styles."""
    h, w = coverage.shape
    pad = np.zeros((PAD, PAD), np.uint8)
    top, left = (int(rng.integers(0, max(1, PAD - s))) for s in (h, w))
    pad[top : top + h, left : left + w] = np.round(coverage[: PAD - top, : PAD - left] * 255)
    return export(Image.fromarray(pad), STYLES[rng.integers(len(STYLES))])


def _pen(digit: np.ndarray, rng: np.random.Generator, width: tuple[float, float], relative: bool) -> bytes:
    height = int(rng.integers(110, 240))
    stroke = rng.uniform(*width) * (height if relative else 1)
    return _on_pad(redraw(digit, height, stroke), rng)


def _low_res(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    side = int(rng.choice([6, 7, *range(10, 17)]))
    img = Image.fromarray(digit)
    if side < 10 or rng.random() < 0.5:  # the digit's 20 px box, or MNIST's whole frame (digit 3/4 of it)
        img = img.crop((4, 4, 24, 24))
    small = np.asarray(img.resize((side, side), RESAMPLING[rng.integers(len(RESAMPLING))]), np.float32)
    levels = int(rng.choice([4, 8, 32, 256])) - 1
    small = np.round(small / max(float(small.max()), 1.0) * levels) * (255 / levels)
    if rng.random() < 0.5:
        small = 255 - small
    out = Image.fromarray(small.astype(np.uint8))
    if rng.random() < 0.5:
        factor = int(rng.integers(2, 7))
        out = out.resize((side * factor, side * factor), Image.Resampling.BILINEAR)
    return _png(out)


def _optdigit(digit: np.ndarray, enlarge: bool, rng: np.random.Generator) -> bytes:
    """As UCI's optdigits were made: the digit's box as a 32x32 bitmap, its ink counted in 4x4 blocks
    (0-16), so 8x8 pixels of 17 grey levels; bright ink, or dark on white."""
    rows, cols = np.flatnonzero(digit.max(axis=1) > 0), np.flatnonzero(digit.max(axis=0) > 0)
    box = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = box.shape
    scaled = Image.fromarray(box).resize((max(1, round(32 * w / max(h, w))), max(1, round(32 * h / max(h, w)))))
    frame = Image.new("L", (32, 32), 0)
    frame.paste(scaled, ((32 - scaled.width) // 2, (32 - scaled.height) // 2))  # the longer side fills it
    bitmap = np.asarray(frame) > 127
    counts = bitmap.reshape(8, 4, 8, 4).sum(axis=(1, 3))  # 0..16
    pixels = np.round(counts * (255 / 16)).astype(np.uint8)
    if rng.random() < 0.5:
        pixels = 255 - pixels
    out = Image.fromarray(pixels)
    return _png(out.resize((32, 32), Image.Resampling.NEAREST) if enlarge else out)


def fitted(digit: np.ndarray, kind: str, rng: np.random.Generator) -> bytes:
    """An MNIST training digit (28x28 uint8) as a PNG of the fitted `kind`."""
    if kind == "marker":
        return _pen(digit, rng, (0.09, 0.3), relative=True)
    if kind == "hairline":
        return _pen(digit, rng, (1.0, 2.0), relative=False)
    if kind == "low-res":
        return _low_res(digit, rng)
    raise ValueError(f"unknown variant {kind!r}; choose from {FITTED}")


def held_out(digit: np.ndarray, label: int, kind: str, rng: np.random.Generator) -> bytes:
    """A PNG of the held-out `kind`: of `digit` (an MNIST test digit) for low resolution, of the pad's
    templates of `label` for the pens."""
    if kind == "marker":
        return draw(label, rng, pen=(0.12, 0.20)).png
    if kind == "hairline":
        return draw(label, rng, pen=(0.01, 0.025)).png
    if kind in ("low-res 8x8", "low-res 8x8 enlarged"):
        return _optdigit(digit, kind.endswith("enlarged"), rng)
    raise ValueError(f"unknown variant {kind!r}; choose from {HELD_OUT}")


def fitted_set(x: np.ndarray, y: np.ndarray, seed: int) -> Iterator[tuple[str, bytes, int]]:
    """(kind, PNG, label) for each MNIST training digit of x (n, 784) uint8, the fitted kinds in turn."""
    rng = np.random.default_rng(seed)
    for i, (digit, label) in enumerate(zip(x.reshape(-1, 28, 28), y, strict=True)):
        kind = FITTED[i % len(FITTED)]
        yield kind, fitted(digit, kind, rng), int(label)


def held_out_set(x: np.ndarray, y: np.ndarray, seed: int = 4343) -> Iterator[tuple[str, bytes, int]]:
    """(kind, PNG, label): every held-out kind for each MNIST test digit of x (n, 784) uint8."""
    rng = np.random.default_rng(seed)
    for kind in HELD_OUT:
        for digit, label in zip(x.reshape(-1, 28, 28), y, strict=True):
            yield kind, held_out(digit, int(label), kind, rng), int(label)

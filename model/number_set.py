"""Generated written numbers: several digits side by side, drawn the way people write them on the pad.

Each number is drawn from a recipe of independent kinds, so results can be reported per kind and
whole kinds kept out of everything that is fitted:

    source  "pen": the page's own stroke templates (model.drawings), the way a finger or mouse draws;
            "mnist": real handwriting, MNIST test digits redrawn with a round pen
    gap     "apart" (a clear space), "close" (a hair apart), "touching" (the ink meets),
            "overlap" (one digit's strokes run into the next's); a number with one touching or
            overlapping pair counts as touching
    pen     "fine", "medium" (what the pad draws), "bold"; held out: "felt" (very thick)
    canvas  "pad" (the page's 560x280), "wide" (840x240); held out: "phone" (360x200)

and within each: 1 to 6 digits, a slant shared by the number and a wobble per digit, unequal sizes
(+-15%), a baseline that rises or falls up to 8% of the height per digit, the position, and one of
the three canvas exports (transparent, black on white, white on black).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from model.drawings import STYLES, export, glyph
from model.negatives import LETTERS, TRAIN_FONTS, fonts
from model.photo_set import recipe, redraw

SOURCES = ("pen", "mnist")
GAPS = ("apart", "close", "touching", "overlap")
PENS, HELD_OUT_PENS = ("fine", "medium", "bold"), ("felt",)
CANVASES, HELD_OUT_CANVASES = ("pad", "wide"), ("phone",)
PEN_WIDTH = {"fine": (0.05, 0.08), "medium": (0.08, 0.12), "bold": (0.12, 0.16), "felt": (0.16, 0.22)}  # of height
CANVAS_SIZE = {"pad": (560, 280), "wide": (840, 240), "phone": (360, 200)}
GAP = {"apart": (0.15, 0.5), "close": (0.03, 0.12)}  # of the digit height, between the nearest ink


@dataclass(frozen=True)
class WrittenNumber:
    text: str  # the digits, left to right
    boxes: tuple[tuple[int, int, int, int], ...]  # each digit's (x, y, width, height) on the canvas
    kind: dict[str, str]
    touching: bool  # some neighbours' ink meets
    png: bytes


def _letter(char: str, rng: np.random.Generator, height: int, family: str) -> np.ndarray:
    """A letter of the machine's `family` fonts, `height` px tall: float32 coverage, cropped."""
    files = fonts(family)
    font = ImageFont.truetype(str(files[rng.integers(len(files))]), int(height * 1.4))
    img = Image.new("L", (int(height * 2), int(height * 2)), 0)
    ImageDraw.Draw(img).text((height // 4, 0), char, fill=255, font=font)
    a = np.asarray(img, np.float32) / 255
    ys, xs = np.nonzero(a > 0.05)
    return a[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _glyph(
    char: str, source: str, rng: np.random.Generator, height: int, width: float, mnist, family: str
) -> np.ndarray:
    if not char.isdigit():
        return _letter(char, rng, height, family)
    label = int(char)
    if source == "pen":
        return glyph(label, rng, height - width, max(2, round(width)))
    images = mnist[label]
    g = redraw(images[rng.integers(len(images))], height, width)
    ys, xs = np.nonzero(g > 0.05)
    return g[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _shear(g: np.ndarray, shear: float) -> np.ndarray:
    """Slant a glyph: x += shear * (distance above its bottom); positive leans right."""
    h, w = g.shape
    pad = int(abs(shear) * h) + 1
    m = np.float32([[1, -shear, shear * h + (0 if shear >= 0 else pad)], [0, 1, 0]])
    out = cv2.warpAffine(g, m, (w + pad, h), flags=cv2.INTER_LINEAR)
    xs = np.nonzero(out.max(axis=0) > 0.05)[0]
    return out[:, xs.min() : xs.max() + 1]


def _offset(left: np.ndarray, right: np.ndarray, dy: int, gap: float) -> int:
    """How far right of `left`'s origin `right` goes so that their nearest ink is `gap` px apart
    (0: touching, negative: overlapping), `right` being `dy` px lower."""
    h = left.shape[0]
    best = -(10**9)
    for r in range(right.shape[0]):
        row = r + dy
        if not 0 <= row < h:
            continue
        a, b = np.nonzero(left[row] > 0.5)[0], np.nonzero(right[r] > 0.5)[0]
        if len(a) and len(b):
            best = max(best, a.max() - b.min() + 1)
    if best == -(10**9):  # no rows in common: place by the boxes
        best = left.shape[1]
    return int(best + round(gap))


def _on_canvas(
    glyphs: list[np.ndarray], lefts: list[int], tops: list[int], size: tuple[int, int], margin: float, rng
) -> tuple[np.ndarray, tuple]:
    """The glyphs composed at their places, then fitted onto a canvas of `size` with a margin,
    anywhere it fits: (the canvas's coverage, each glyph's box on it)."""
    cw, ch = size
    top0 = min(tops)
    tops = [t - top0 for t in tops]
    total_w = max(left + g.shape[1] for left, g in zip(lefts, glyphs, strict=True))
    total_h = max(t + g.shape[0] for t, g in zip(tops, glyphs, strict=True))
    sheet = np.zeros((total_h, total_w), np.float32)
    for left, t, g in zip(lefts, tops, glyphs, strict=True):
        region = sheet[t : t + g.shape[0], left : left + g.shape[1]]
        np.maximum(region, g, out=region)
    fit = min(1.0, (cw - 2 * margin) / total_w, (ch - 2 * margin) / total_h)
    if fit < 1:
        sheet = cv2.resize(
            sheet, (max(1, int(total_w * fit)), max(1, int(total_h * fit))), interpolation=cv2.INTER_AREA
        )
    sh, sw = sheet.shape
    x0 = int(rng.uniform(margin, max(margin + 1, cw - sw - margin)))
    y0 = int(rng.uniform(margin, max(margin + 1, ch - sh - margin)))
    page = np.zeros((ch, cw), np.float32)
    page[y0 : y0 + sh, x0 : x0 + sw] = sheet[: ch - y0, : cw - x0]
    boxes = tuple(
        (x0 + int(left * fit), y0 + int(t * fit), max(1, int(g.shape[1] * fit)), max(1, int(g.shape[0] * fit)))
        for left, t, g in zip(lefts, tops, glyphs, strict=True)
    )
    return page, boxes


def written_number(
    digits: str,
    rng: np.random.Generator,
    source: str,
    gap: str,
    pen: str,
    canvas: str,
    mnist=None,
    style=None,
    family: str = TRAIN_FONTS,
) -> WrittenNumber:
    """`digits` written on a canvas of kind `canvas`; `mnist` maps a label to 28x28 uint8 images. A
    character that is not a digit is a letter of the `family` fonts (for the segment verifier: a
    letter among digits is one whole mark, not pieces)."""
    cw, ch = CANVAS_SIZE[canvas]
    n = len(digits)
    height = rng.uniform(0.45, 0.75) * ch
    slant = rng.uniform(-0.3, 0.3)
    rise = -rng.uniform(-0.08, 0.08)  # y grows downwards: a rising baseline has negative steps
    width = height * rng.uniform(*PEN_WIDTH[pen])
    glyphs = []
    for d in digits:
        h = int(height * rng.uniform(0.85, 1.15))
        g = _glyph(d, source, rng, h, width, mnist, family)
        glyphs.append(_shear(g, slant + rng.uniform(-0.08, 0.08)))
    # Which neighbours touch: in a touching number at least one pair does.
    kinds = [gap] * (n - 1)
    if gap in ("touching", "overlap") and n > 2:
        kinds = [gap if rng.random() < 0.5 else str(rng.choice(["close", "apart", gap])) for _ in range(n - 1)]
        kinds[int(rng.integers(n - 1))] = gap
    # Each digit stands on a baseline that rises (or falls) by `rise` of the height per digit.
    tops = [int(rise * height * i) - g.shape[0] for i, g in enumerate(glyphs)]
    lefts = [0]
    for i in range(1, n):
        if kinds[i - 1] in GAP:
            gap_px = rng.uniform(*GAP[kinds[i - 1]]) * height
        elif kinds[i - 1] == "touching":
            gap_px = 0.0
        else:
            gap_px = -rng.uniform(0.1, 0.35) * width
        step = _offset(glyphs[i - 1], glyphs[i], tops[i] - tops[i - 1], gap_px)
        lefts.append(lefts[-1] + max(step, glyphs[i - 1].shape[1] // 3))  # never drawn over the previous one
    page, boxes = _on_canvas(glyphs, lefts, tops, (cw, ch), 6 + width, rng)
    ink = Image.fromarray(np.round(np.clip(page, 0, 1) * 255).astype(np.uint8), mode="L")
    style = style or STYLES[int(rng.integers(len(STYLES)))]
    kind = {"source": source, "gap": gap, "pen": pen, "canvas": canvas, "style": style}
    touching = any(k in ("touching", "overlap") for k in kinds)
    return WrittenNumber(digits, boxes, kind, touching, export(ink, style))


def _kinds(rng: np.random.Generator, held_out: bool | None) -> tuple[str, ...]:
    """(pen, canvas), as model.photo_set.recipe draws them."""
    return recipe(rng, [(PENS, HELD_OUT_PENS), (CANVASES, HELD_OUT_CANVASES)], held_out)


def by_label(images: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    return {d: images[labels == d] for d in range(10)}


def number_set(
    n: int,
    seed: int,
    mnist: dict[int, np.ndarray],
    held_out: bool | None = False,
    max_digits: int = 6,
    letters: float = 0.0,
) -> Iterator[WrittenNumber]:
    """n written numbers, 1..max_digits long, sources and gaps in turn, pens and canvases as `_kinds`;
    with `letters`, that share of them has one digit replaced by a letter (DejaVu, never the held-out
    Liberation)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        length = int(rng.integers(1, max_digits + 1))
        digits = "".join(str(d) for d in rng.integers(0, 10, length))
        if letters and length > 1 and rng.random() < letters and fonts(TRAIN_FONTS):
            k = int(rng.integers(length))
            digits = digits[:k] + str(rng.choice(list(LETTERS))) + digits[k + 1 :]
        source, gap = SOURCES[i % 2], GAPS[(i // 2) % 4]
        pen, canvas = _kinds(rng, held_out)
        yield written_number(digits, rng, source, gap, pen, canvas, mnist)

"""A fixed set of canvas-style digit drawings, generated: strokes as a browser canvas exports them.

Each digit has a few stroke templates in a unit box (x right, y down). A drawing jitters, slants and
stretches a template, places it anywhere on a 280x280 canvas at 40-85% of its height, strokes it
with a round pen 5-9% of the canvas wide, anti-aliased, and exports it one of three ways:
transparent RGBA with black ink (what `canvas.toDataURL()` gives), black on white, white on black.

The set checks the whole input path (decode, alpha, polarity, crop, scale, centre) on the kind of
image people draw, which MNIST's own test set cannot: tests/test_canvas_set.py and the training
service's evaluation both use it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CANVAS = 280
STYLES = ("transparent", "white", "dark")


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, n: int = 24) -> list:
    """Points along an ellipse, angles in degrees (0 = right, 90 = down), start -> end."""
    return [
        (cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a))) for a in np.linspace(start, end, n)
    ]


def _smooth(points: list, n: int = 12) -> list:
    """Catmull-Rom through the control points: a hand's curve, not a polygon."""
    pts = [points[0], *points, points[-1]]
    out = []
    for i in range(1, len(pts) - 2):
        p0, p1, p2, p3 = (np.array(p) for p in pts[i - 1 : i + 3])
        for t in np.linspace(0, 1, n, endpoint=False):
            out.append(
                tuple(
                    0.5
                    * (
                        2 * p1
                        + (-p0 + p2) * t
                        + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                        + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
                    )
                )
            )
    out.append(tuple(points[-1]))
    return out


# Each template: a list of strokes, each stroke a list of (x, y) in the unit box.
TEMPLATES: dict[int, list[list[list[tuple[float, float]]]]] = {
    0: [
        [_arc(0.5, 0.5, 0.3, 0.46, -100, 265)],
        [_arc(0.5, 0.5, 0.34, 0.45, -80, 285)],
    ],
    1: [
        [[(0.52, 0.04), (0.48, 0.96)]],
        [[(0.6, 0.04), (0.42, 0.96)]],
    ],
    2: [
        [
            [
                *_smooth(
                    [(0.18, 0.28), (0.35, 0.07), (0.62, 0.05), (0.8, 0.25), (0.7, 0.5), (0.35, 0.78), (0.15, 0.95)]
                ),
                (0.5, 0.93),
                (0.88, 0.93),
            ]
        ],
        [[*_smooth([(0.2, 0.22), (0.5, 0.04), (0.8, 0.22), (0.7, 0.5), (0.2, 0.94)]), (0.85, 0.95)]],
    ],
    3: [
        [
            _smooth(
                [
                    (0.2, 0.14),
                    (0.5, 0.04),
                    (0.78, 0.2),
                    (0.68, 0.4),
                    (0.42, 0.48),
                    (0.7, 0.55),
                    (0.82, 0.75),
                    (0.55, 0.95),
                    (0.18, 0.86),
                ]
            )
        ],
        [_smooth([(0.22, 0.1), (0.6, 0.05), (0.75, 0.25), (0.45, 0.47), (0.8, 0.68), (0.6, 0.93), (0.2, 0.9)])],
    ],
    4: [
        [[(0.3, 0.04), (0.18, 0.58), (0.86, 0.58)], [(0.7, 0.2), (0.68, 0.97)]],
        [[(0.62, 0.04), (0.14, 0.64), (0.88, 0.64)], [(0.66, 0.34), (0.66, 0.97)]],
    ],
    5: [
        [
            [(0.82, 0.05), (0.3, 0.05), (0.25, 0.45)],
            _smooth([(0.25, 0.45), (0.55, 0.37), (0.8, 0.55), (0.76, 0.82), (0.5, 0.95), (0.18, 0.86)]),
        ],
        [
            [(0.3, 0.06), (0.26, 0.44)],
            [(0.3, 0.06), (0.8, 0.06)],
            _smooth([(0.26, 0.44), (0.6, 0.4), (0.8, 0.65), (0.6, 0.93), (0.2, 0.88)]),
        ],
    ],
    6: [
        [
            _smooth(
                [
                    (0.72, 0.04),
                    (0.42, 0.22),
                    (0.24, 0.55),
                    (0.3, 0.86),
                    (0.55, 0.96),
                    (0.76, 0.78),
                    (0.64, 0.56),
                    (0.4, 0.56),
                    (0.26, 0.7),
                ]
            )
        ],
        [_smooth([(0.65, 0.05), (0.3, 0.4), (0.25, 0.8), (0.5, 0.96), (0.75, 0.8), (0.6, 0.55), (0.28, 0.65)])],
    ],
    7: [
        [[(0.14, 0.07), (0.86, 0.07), (0.42, 0.96)]],
        [[(0.18, 0.12), (0.84, 0.06)], _smooth([(0.84, 0.06), (0.62, 0.45), (0.46, 0.96)])],
    ],
    8: [
        [
            _smooth(
                [
                    (0.7, 0.14),
                    (0.5, 0.04),
                    (0.28, 0.16),
                    (0.32, 0.36),
                    (0.5, 0.47),
                    (0.74, 0.62),
                    (0.72, 0.86),
                    (0.5, 0.96),
                    (0.26, 0.86),
                    (0.28, 0.62),
                    (0.5, 0.47),
                    (0.68, 0.34),
                    (0.7, 0.14),
                ]
            )
        ],
        [_arc(0.5, 0.26, 0.2, 0.21, 90, 450), _arc(0.5, 0.71, 0.26, 0.25, -90, 270)],
    ],
    9: [
        [_arc(0.48, 0.3, 0.26, 0.24, 0, 365), [(0.74, 0.3), (0.68, 0.97)]],
        [
            _smooth(
                [
                    (0.74, 0.2),
                    (0.5, 0.05),
                    (0.26, 0.2),
                    (0.32, 0.46),
                    (0.62, 0.44),
                    (0.74, 0.2),
                    (0.72, 0.6),
                    (0.62, 0.97),
                ]
            )
        ],
    ],
}


# Ways of writing that MNIST (American hands, 1990s) hardly has: a continental 1 with a long flag (with
# or without a base), a slashed zero, a 7 with a crossbar. For measuring, and teaching, what corrections
# add: the shipped model reads the long-flag 1 as a 7 a quarter of the time, and is unsure of most zeros.
UNUSUAL: dict[int, list[list[list[tuple[float, float]]]]] = {
    0: [[_arc(0.5, 0.5, 0.3, 0.46, -100, 265), [(0.8, 0.05), (0.2, 0.95)]]],
    1: [
        [[(0.1, 0.5), (0.6, 0.04), (0.6, 0.96)]],
        [[(0.2, 0.35), (0.6, 0.04), (0.6, 0.96)], [(0.3, 0.96), (0.9, 0.96)]],
    ],
    7: [[[(0.1, 0.07), (0.9, 0.07), (0.45, 0.96)], [(0.3, 0.5), (0.85, 0.5)]]],
}


@dataclass(frozen=True)
class Drawing:
    label: int
    style: str
    png: bytes
    pen: int  # pen width in canvas pixels
    height: int  # digit height in canvas pixels


def _transform(strokes: list, rng: np.random.Generator) -> list[np.ndarray]:
    """Slant, stretch and wobble a template the way hands differ."""
    angle = math.radians(rng.uniform(-10, 10))
    shear = rng.uniform(-0.2, 0.15)
    sx = rng.uniform(0.8, 1.15)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    m = rot @ np.array([[sx, shear], [0, 1]])
    out = []
    for s in strokes:
        p = np.asarray(s, float) - 0.5
        p = p @ m.T + rng.normal(0, 0.008, p.shape)
        out.append(p)
    return out


def draw(
    label: int,
    rng: np.random.Generator,
    style: str | None = None,
    size: int = CANVAS,
    unusual: bool = False,
    pen: tuple[float, float] = (0.05, 0.09),
) -> Drawing:
    """A drawing of `label` with a pen of `pen` (a range, in parts of the pad); with `unusual`, in a way
    MNIST lacks (UNUSUAL's 1, 4 and 7)."""
    templates = UNUSUAL[label] if unusual else TEMPLATES[label]
    template = templates[rng.integers(len(templates))]
    strokes = _transform(template, rng)
    style = style or STYLES[rng.integers(len(STYLES))]
    width = max(1, round(rng.uniform(*pen) * size))
    height = rng.uniform(0.40, 0.85) * size
    pts = np.concatenate(strokes)
    span = pts.max(axis=0) - pts.min(axis=0)
    scale = height / span[1]
    w, h = span * scale
    margin = width / 2 + 1
    # anywhere on the canvas that keeps the ink inside: off-centre as often as not
    x0 = rng.uniform(margin, max(margin, size - w - margin))
    y0 = rng.uniform(margin, max(margin, size - h - margin))
    alpha = _render(strokes, scale, (x0, y0), width, (size, size))
    return Drawing(label, style, export(alpha, style), width, round(h))


def _render(strokes: list, scale: float, at: tuple[float, float], pen: int, size: tuple[int, int]) -> Image.Image:
    """Strokes (unit-box points) scaled by `scale`, their top-left at `at`, drawn with a round pen of
    `pen` px, anti-aliased as a canvas does (4x supersampled): an L mask of `size`, 255 = ink."""
    ss = 4
    mask = Image.new("L", (size[0] * ss, size[1] * ss), 0)
    d = ImageDraw.Draw(mask)
    lo = np.concatenate(strokes).min(axis=0)
    for s in strokes:
        q = [((x - lo[0]) * scale * ss + at[0] * ss, (y - lo[1]) * scale * ss + at[1] * ss) for x, y in s]
        d.line(q, fill=255, width=pen * ss, joint="curve")
        r = pen * ss / 2
        for x, y in (q[0], q[-1]):  # round caps
            d.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return mask.resize(size, Image.Resampling.BOX)


def glyph(label: int, rng: np.random.Generator, height: float, pen: int, unusual: bool = False) -> np.ndarray:
    """One digit as the page's pen draws it, `height` px tall: float32 coverage in [0, 1], cropped to
    the ink (for composing numbers, model.number_set)."""
    templates = UNUSUAL[label] if unusual else TEMPLATES[label]
    strokes = _transform(templates[rng.integers(len(templates))], rng)
    pts = np.concatenate(strokes)
    span = pts.max(axis=0) - pts.min(axis=0)
    scale = height / span[1]
    w, h = span * scale
    size = (math.ceil(w + pen + 2), math.ceil(h + pen + 2))
    a = np.asarray(_render(strokes, scale, (pen / 2 + 1, pen / 2 + 1), pen, size), np.float32) / 255
    ys, xs = np.nonzero(a)
    return a[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def export(ink: Image.Image, style: str) -> bytes:
    """An ink mask (L, 255 = ink) as PNG the way the page or an API client sends it: transparent (what
    `canvas.toDataURL()` gives), black on white, or white on black ("dark")."""
    if style == "transparent":
        img = Image.new("RGBA", ink.size, (0, 0, 0, 0))
        img.putalpha(ink)
    elif style == "white":
        img = Image.composite(Image.new("L", ink.size, 0), Image.new("L", ink.size, 255), ink)
    elif style == "dark":
        img = ink
    else:
        raise ValueError(f"unknown style {style!r}; choose from {STYLES}")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def canvas_set(per_digit: int = 30, seed: int = 2026) -> Iterator[Drawing]:
    """The fixed evaluation set: per_digit drawings of each digit, styles cycling, from one seed."""
    rng = np.random.default_rng(seed)
    for i in range(per_digit):
        for label in range(10):
            yield draw(label, rng, STYLES[(i + label) % len(STYLES)])


def restyle(image: np.ndarray, rng: np.random.Generator, style: str | None = None, size: int = CANVAS) -> bytes:
    """A real handwritten digit (a 28x28 MNIST image, 0..255 ink) as if drawn on the pad: scaled to
    40-85% of a size x size canvas, anywhere on it, slanted, with a thinner or thicker pen, exported
    in one of the canvas styles. Real hands' shapes with the page's look, for measuring and fitting."""
    style = style or STYLES[rng.integers(len(STYLES))]
    glyph = Image.fromarray(np.ascontiguousarray(image, np.uint8)).crop((2, 2, 26, 26))
    side = round(rng.uniform(0.45, 0.95) * size)
    big = glyph.resize((side, side), Image.Resampling.BICUBIC)
    shear = rng.uniform(-0.25, 0.25)
    big = big.transform(big.size, Image.Transform.AFFINE, (1, shear, -shear * side / 2, 0, 1, 0), Image.BILINEAR)
    pen = int(rng.integers(-2, 3))  # thinner (erode) or thicker (dilate) strokes
    width = 2 * round(abs(pen) * side / 140) + 1
    if pen and width > 1:
        big = big.filter(ImageFilter.MaxFilter(width) if pen > 0 else ImageFilter.MinFilter(width))
    alpha = Image.new("L", (size, size), 0)
    alpha.paste(big, (int(rng.integers(0, size - side + 1)), int(rng.integers(0, size - side + 1))))
    return export(alpha, style)

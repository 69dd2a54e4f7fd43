"""Things people draw on the pad that are not one digit, generated the way the page draws them.

Kinds: letters and symbols from the machine's fonts, scribbles, two or three digits side by side,
shapes, crossed-out digits. Training and held-out sets differ in what they are made of, not only in
their seed: the held-out letters come from other font families (Liberation, where the training
letters are DejaVu), and the held-out shapes (spirals, grids, arrows) are of kinds training never
draws, so a held-out figure measures what the detector learnt, not what it memorised.

Letters that a hand's digit can look like (O, I, l, S, Z, B, g, q, ...) are never negatives: a user
who writes a 0 round like an O must still get a 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from model.drawings import STYLES, TEMPLATES, _smooth, _transform, export

FONT_DIR = Path("/usr/share/fonts/truetype")
TRAIN_FONTS = "dejavu"
HELD_OUT_FONTS = "liberation"
# Unlike any handwritten digit; the look-alikes (O o Q D I l i j S s Z z B b g q G T t L 7-ish) are left out.
LETTERS = "ACEFHKMNPRUVWXYacefhkmnpruvwxy"
SYMBOLS = "#%&@?!=+*$<>~^{}"
TRAIN_KINDS = ("letter", "symbol", "scribble", "digits", "shape", "crossed")
HELD_OUT_KINDS = ("letter", "symbol", "scribble", "digits", "crossed", "new shape")


@cache
def fonts(family: str) -> tuple[Path, ...]:
    """The machine's TrueType files of one family folder; none on a machine without it."""
    folder = FONT_DIR / family
    return tuple(sorted(p for p in folder.glob("*.ttf") if "Math" not in p.name)) if folder.is_dir() else ()


def _stroke_mask(strokes: list[np.ndarray], rng: np.random.Generator, size: int) -> Image.Image:
    """Strokes in a unit box, placed and sized as a person would on a size x size pad, with a round
    pen of 5-9% of the pad, anti-aliased: an L mask, 255 = ink."""
    pen = max(1, round(rng.uniform(0.05, 0.09) * size))
    pts = np.concatenate(strokes)
    lo, span = pts.min(axis=0), np.maximum(pts.max(axis=0) - pts.min(axis=0), 1e-3)
    scale = rng.uniform(0.4, 0.85) * size / max(span)
    margin = pen / 2 + 1
    x0 = rng.uniform(margin, max(margin, size - span[0] * scale - margin))
    y0 = rng.uniform(margin, max(margin, size - span[1] * scale - margin))
    ss = 2
    mask = Image.new("L", (size * ss, size * ss), 0)
    d = ImageDraw.Draw(mask)
    r = pen * ss / 2
    for s in strokes:
        q = [((x - lo[0]) * scale * ss + x0 * ss, (y - lo[1]) * scale * ss + y0 * ss) for x, y in s]
        d.line(q, fill=255, width=pen * ss)
        # A round pen leaves a disc at every point: the joints and both ends. Discs drawn in C are twice
        # as fast as line(joint="curve"), whose pie slices are computed in Python (24,000 negatives:
        # 40 s instead of 75 s), and the masks differ by 0.9 grey levels in 255 on average.
        for x, y in q:
            d.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return mask.resize((size, size), Image.Resampling.BOX)


def _glyph_mask(char: str, font: Path, rng: np.random.Generator, size: int) -> Image.Image:
    px = round(rng.uniform(0.45, 0.8) * size)
    img = Image.new("L", (size, size), 0)
    f = ImageFont.truetype(str(font), px)
    left, top, right, bottom = ImageDraw.Draw(img).textbbox((0, 0), char, font=f)
    x = rng.uniform(0, max(0, size - (right - left))) - left
    y = rng.uniform(0, max(0, size - (bottom - top))) - top
    ImageDraw.Draw(img).text((x, y), char, fill=255, font=f)
    return img


def _scribble(rng: np.random.Generator) -> list[np.ndarray]:
    return [
        np.array(_smooth([tuple(p) for p in rng.uniform(0, 1, (rng.integers(4, 12), 2))]))
        for _ in range(rng.integers(1, 3))
    ]


def _several_digits(rng: np.random.Generator) -> list[np.ndarray]:
    strokes = []
    for i in range(rng.integers(2, 4)):
        digit = int(rng.integers(10))
        template = TEMPLATES[digit][rng.integers(len(TEMPLATES[digit]))]
        strokes += [s + np.array([i * 0.85 + 0.5, 0.5]) for s in _transform(template, rng)]
    return strokes


def _shape(rng: np.random.Generator) -> list[np.ndarray]:
    kind = rng.integers(4)
    if kind == 0:  # a five-pointed star
        a = np.linspace(-math.pi / 2, 1.5 * math.pi, 11)
        r = np.where(np.arange(11) % 2 == 0, 1.0, rng.uniform(0.35, 0.5))
        return [np.stack([r * np.cos(a), r * np.sin(a)], axis=1)]
    if kind == 1:  # a triangle
        a = np.linspace(-math.pi / 2, 1.5 * math.pi, 4) + rng.uniform(-0.3, 0.3)
        return [np.stack([np.cos(a), np.sin(a)], axis=1)]
    if kind == 2:  # a square or a rectangle
        w = rng.uniform(0.6, 1.4)
        return [np.array([(0, 0), (w, 0), (w, 1), (0, 1), (0, 0)], float)]
    t = np.linspace(0, math.pi, 30)  # a heart
    half = np.stack([np.sin(t) ** 3, -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t)) / 16], axis=1)
    return [np.concatenate([half, half[::-1] * np.array([-1, 1])])]


def _new_shape(rng: np.random.Generator) -> list[np.ndarray]:
    kind = rng.integers(3)
    if kind == 0:  # a spiral
        t = np.linspace(0, rng.uniform(3, 5) * math.pi, 80)
        return [np.stack([t * np.cos(t), t * np.sin(t)], axis=1)]
    if kind == 1:  # a grid
        n = rng.integers(2, 4)
        lines = [np.array([(i / n, 0), (i / n, 1)]) for i in range(n + 1)]
        return lines + [np.array([(0, i / n), (1, i / n)]) for i in range(n + 1)]
    return [np.array([(0, 0.5), (1, 0.5)]), np.array([(0.7, 0.2), (1, 0.5), (0.7, 0.8)])]  # an arrow


def _crossed(rng: np.random.Generator) -> list[np.ndarray]:
    digit = int(rng.integers(10))
    strokes = _transform(TEMPLATES[digit][rng.integers(len(TEMPLATES[digit]))], rng)
    cross = [np.array([(-0.55, -0.5), (0.55, 0.5)]), np.array([(0.55, -0.5), (-0.55, 0.5)])]
    return strokes + (
        cross if rng.random() < 0.5 else [np.array(_smooth([tuple(p) for p in rng.uniform(-0.5, 0.5, (7, 2))]))]
    )


_STROKES: dict[str, Callable[[np.random.Generator], list[np.ndarray]]] = {
    "scribble": _scribble,
    "digits": _several_digits,
    "shape": _shape,
    "new shape": _new_shape,
    "crossed": _crossed,
}


def mask(kind: str, rng: np.random.Generator, family: str, size: int = 112) -> Image.Image:
    """One negative of `kind` as an L mask on a size x size pad (255 = ink)."""
    if kind in ("letter", "symbol"):
        chars = LETTERS if kind == "letter" else SYMBOLS
        family_fonts = fonts(family)
        if not family_fonts:
            raise FileNotFoundError(f"no {family} fonts under {FONT_DIR}")
        return _glyph_mask(chars[rng.integers(len(chars))], family_fonts[rng.integers(len(family_fonts))], rng, size)
    return _stroke_mask(_STROKES[kind](rng), rng, size)


def training_masks(n: int, seed: int) -> Iterator[tuple[str, Image.Image]]:
    """n negatives for training, the kinds in turn, DejaVu letters and symbols."""
    rng = np.random.default_rng(seed)
    kinds = [k for k in TRAIN_KINDS if k not in ("letter", "symbol") or fonts(TRAIN_FONTS)]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        yield kind, mask(kind, rng, TRAIN_FONTS)


def held_out_set(per_kind: int = 60, seed: int = 4242) -> Iterator[tuple[str, bytes]]:
    """The held-out negatives as PNG files drawn on a 280-pixel pad: other fonts, new shapes, new seeds."""
    rng = np.random.default_rng(seed)
    for kind in HELD_OUT_KINDS:
        if kind in ("letter", "symbol") and not fonts(HELD_OUT_FONTS):
            continue
        for i in range(per_kind):
            yield kind, export(mask(kind, rng, HELD_OUT_FONTS, size=280), STYLES[i % len(STYLES)])

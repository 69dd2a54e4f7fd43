"""Things people draw on the pad that are not one digit, generated the way the page draws them.

Kinds: letters and symbols from the machine's fonts, scribbles, two or three digits side by side,
shapes, crossed-out digits, doodles (two to five random parts thrown together: a family with its own
parameters, not a list), hatching, and things that are not drawings at all: filled, textured objects
as a photo of one shows them. Training and held-out sets differ in what they are made of, not only in
their seed: the held-out letters come from other font families (Liberation, where the training
letters are DejaVu), and the held-out shapes (spirals, grids, arrows), pictures (houses, faces,
flowers, clouds, suns) and garments (shirts, trousers, dresses, shoes, bags) are of kinds training
never makes, so a held-out figure measures what the detector learnt, not what it memorised.

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
TRAIN_KINDS = ("letter", "symbol", "scribble", "digits", "shape", "crossed", "doodle", "hatching", "object")
HELD_OUT_KINDS = (
    "letter", "symbol", "scribble", "digits", "crossed", "new shape", "picture", "garment",
)  # fmt: skip


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


def _primitive(rng: np.random.Generator) -> list[np.ndarray]:
    """One of a doodle's parts, in a unit box: an ellipse, a polygon, a zigzag, a wave, a line, an arc."""
    kind, t = rng.integers(6), np.linspace(0, 2 * math.pi, 40)
    if kind == 0:
        return [np.stack([rng.uniform(0.2, 0.5) * np.cos(t), rng.uniform(0.2, 0.5) * np.sin(t)], axis=1)]
    if kind == 1:
        a = np.linspace(0, 2 * math.pi, int(rng.integers(4, 9))) + rng.uniform(0, math.pi)
        return [np.stack([np.cos(a), np.sin(a)], axis=1) * rng.uniform(0.2, 0.5)]
    if kind == 2:
        n = int(rng.integers(3, 8))
        return [np.stack([np.linspace(-0.5, 0.5, n), np.where(np.arange(n) % 2, 0.15, -0.15)], axis=1)]
    if kind == 3:
        x = np.linspace(-0.5, 0.5, 40)
        return [np.stack([x, 0.15 * np.sin(x * rng.uniform(8, 20))], axis=1)]
    if kind == 4:
        return [rng.uniform(-0.5, 0.5, (2, 2))]
    arc = np.linspace(0, rng.uniform(1, 1.6) * math.pi, 30)
    return [np.stack([0.4 * np.cos(arc), 0.4 * np.sin(arc)], axis=1)]


def _doodle(rng: np.random.Generator) -> list[np.ndarray]:
    """Two to five parts (model.negatives._primitive) thrown together, or an outline with parts inside it
    or around it: open-ended, a family with its own parameters, not a list of pictures."""
    if rng.random() < 0.5:
        strokes = []
        for _ in range(rng.integers(2, 6)):
            at = rng.uniform(-0.6, 0.6, 2)
            strokes += [s + at for s in _primitive(rng)]
        return strokes
    t = np.linspace(0, 2 * math.pi, 48)
    r = 1 + sum(rng.uniform(-0.15, 0.15) * np.cos(k * t + rng.uniform(0, 6)) for k in range(2, 4))
    outline = np.stack([rng.uniform(0.7, 1.4) * r * np.cos(t), r * np.sin(t)], axis=1)
    strokes = [outline]
    for _ in range(rng.integers(1, 5)):
        inside = rng.random() < 0.6
        at = rng.uniform(-0.5, 0.5, 2) if inside else rng.uniform(-1.3, 1.3, 2)
        strokes += [s * (0.5 if inside else 0.8) + at for s in _primitive(rng)]
    return strokes


def _hatching(rng: np.random.Generator) -> list[np.ndarray]:
    """Parallel lines, crossed or not, in a patch: shading, a fence, a cross-hatched box."""
    n, angle = int(rng.integers(3, 8)), rng.uniform(0, math.pi)
    lines = []
    for a in (angle, angle + rng.uniform(0.5, 1.6)) if rng.random() < 0.5 else (angle,):
        d, u = np.array([math.cos(a), math.sin(a)]), np.array([-math.sin(a), math.cos(a)])
        lines += [np.stack([u * o - d * 0.5, u * o + d * 0.5]) for o in np.linspace(-0.5, 0.5, n)]
    return lines


def _picture(rng: np.random.Generator) -> list[np.ndarray]:
    """Held out: what people draw for fun, a house, a face, a flower, a cloud, a sun."""
    kind, t = rng.integers(5), np.linspace(0, 2 * math.pi, 48)
    circle = np.stack([np.cos(t), np.sin(t)], axis=1)
    if kind == 0:  # a house: a square under a roof, a door
        return [np.array([(0, 1), (0, 0.4), (1, 0.4), (1, 1), (0, 1)]), np.array([(0, 0.4), (0.5, 0), (1, 0.4)]),
                np.array([(0.4, 1), (0.4, 0.7), (0.6, 0.7), (0.6, 1)])]  # fmt: skip
    if kind == 1:  # a face: a head, two eyes, a smile
        smile = np.stack([0.5 * np.cos(t[5:19]), 0.2 + 0.35 * np.sin(t[5:19])], axis=1)
        return [circle, circle * 0.08 + (-0.35, -0.3), circle * 0.08 + (0.35, -0.3), smile]
    if kind == 2:  # a flower: petals around a centre, a stem
        petals = int(rng.integers(4, 8))
        r = 0.6 + 0.4 * np.abs(np.cos(petals * t / 2))
        return [np.stack([r * np.cos(t), r * np.sin(t)], axis=1) * 0.5, np.array([(0, 0.5), (0, 1.4)])]
    if kind == 3:  # a cloud: a bumpy closed curve
        r = 1 + 0.18 * np.abs(np.sin(int(rng.integers(4, 8)) * t / 2))
        return [np.stack([1.6 * r * np.cos(t), r * np.sin(t)], axis=1)]
    rays = [np.stack([np.array([math.cos(a), math.sin(a)]) * 0.65, np.array([math.cos(a), math.sin(a)])])
            for a in np.linspace(0, 2 * math.pi, int(rng.integers(6, 12)), endpoint=False)]  # fmt: skip
    return [circle * 0.45, *rays]  # a sun


_STROKES: dict[str, Callable[[np.random.Generator], list[np.ndarray]]] = {
    "scribble": _scribble,
    "digits": _several_digits,
    "shape": _shape,
    "new shape": _new_shape,
    "crossed": _crossed,
    "doodle": _doodle,
    "hatching": _hatching,
    "picture": _picture,
}


def _blob(rng: np.random.Generator) -> list[np.ndarray]:
    """A fitted object's outline: a lumpy closed shape (a stone, a bag, a fruit), or boxes together."""
    if rng.random() < 0.5:
        t = np.linspace(0, 2 * math.pi, 64, endpoint=False)
        r = 1 + sum(rng.uniform(-0.25, 0.25) * np.cos(k * t + rng.uniform(0, 6)) for k in range(2, 5))
        return [np.stack([rng.uniform(0.6, 1.4) * r * np.cos(t), r * np.sin(t)], axis=1)]
    boxes = []
    for _ in range(rng.integers(2, 4)):
        (x0, y0), (w, h) = rng.uniform(-0.5, 0.2, 2), rng.uniform(0.3, 0.8, 2)
        boxes.append(np.array([(x0, y0), (x0 + w, y0), (x0 + w, y0 + h), (x0, y0 + h)]))
    return boxes


def _garment(rng: np.random.Generator) -> list[np.ndarray]:
    """Held out: the outline of a thing in a photo, a shirt, trousers, a dress, a shoe, a bag."""
    kind, j = rng.integers(5), lambda p: np.asarray(p, float) + rng.normal(0, 0.02, np.shape(p))
    if kind == 0:  # a shirt: body and sleeves
        return [j([(0.3, 0), (0.7, 0), (1, 0.25), (0.85, 0.4), (0.75, 0.3), (0.75, 1), (0.25, 1), (0.25, 0.3),
                   (0.15, 0.4), (0, 0.25)])]  # fmt: skip
    if kind == 1:  # trousers
        return [j([(0.25, 0), (0.75, 0), (0.8, 1), (0.57, 1), (0.5, 0.3), (0.43, 1), (0.2, 1)])]
    if kind == 2:  # a dress
        return [j([(0.38, 0), (0.62, 0), (0.6, 0.35), (0.85, 1), (0.15, 1), (0.4, 0.35)])]
    if kind == 3:  # a shoe
        return [j([(0, 0.45), (0.35, 0.45), (0.55, 0.6), (1, 0.7), (1, 0.85), (0, 0.85)])]
    return [j([(0.1, 0.35), (0.9, 0.35), (0.95, 1), (0.05, 1)]),  # a bag and its handle
            j([(0.3, 0.35), (0.35, 0.05), (0.65, 0.05), (0.7, 0.35), (0.6, 0.35), (0.57, 0.15), (0.43, 0.15),
               (0.4, 0.35)])]  # fmt: skip


def _filled(outlines: list[np.ndarray], rng: np.random.Generator, size: int) -> Image.Image:
    """A photographed thing rather than a drawing: outlines filled, filling most of the frame, with a
    texture of light, stripes or grain (the way a garment or a bag looks on a plain background)."""
    pts = np.concatenate(outlines)
    lo, span = pts.min(axis=0), np.maximum(pts.max(axis=0) - pts.min(axis=0), 1e-3)
    scale = rng.uniform(0.6, 0.95) * size / max(span)
    at = (size - span * scale) / 2 + rng.uniform(-0.05, 0.05, 2) * size
    shape = Image.new("L", (size, size), 0)
    for o in outlines:
        ImageDraw.Draw(shape).polygon([tuple(p) for p in (o - lo) * scale + at], fill=255)
    yy, xx = np.mgrid[0:size, 0:size] / size
    a = rng.uniform(0, 2 * math.pi)
    light = rng.uniform(0.4, 0.8) + rng.uniform(0, 0.3) * (np.cos(a) * xx + np.sin(a) * yy)
    stripes = rng.uniform(0, 0.25) * (np.sin(2 * math.pi * rng.uniform(3, 15) * (yy if rng.random() < 0.5 else xx)) > 0)
    texture = np.clip(light - stripes + rng.normal(0, rng.uniform(0, 0.08), (size, size)), 0.15, 1)
    return Image.fromarray(np.round(np.asarray(shape, np.float32) * texture).astype(np.uint8))


_FILLED: dict[str, Callable[[np.random.Generator], list[np.ndarray]]] = {"object": _blob, "garment": _garment}


def mask(kind: str, rng: np.random.Generator, family: str, size: int = 112) -> Image.Image:
    """One negative of `kind` as an L mask on a size x size pad (255 = ink)."""
    if kind in ("letter", "symbol"):
        chars = LETTERS if kind == "letter" else SYMBOLS
        family_fonts = fonts(family)
        if not family_fonts:
            raise FileNotFoundError(f"no {family} fonts under {FONT_DIR}")
        return _glyph_mask(chars[rng.integers(len(chars))], family_fonts[rng.integers(len(family_fonts))], rng, size)
    if kind in _FILLED:
        return _filled(_FILLED[kind](rng), rng, size)
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

"""Generated photos of writing on paper: digits, and things that are not one digit.

Each photo is drawn from a recipe of independent kinds, so results can be reported per kind and
whole kinds kept out of everything that is fitted:

    paper   plain, ruled (with or without a margin), squared; held out: dotted, kraft (brown),
            sticky (a yellow note)
    ink     ballpoint black, ballpoint blue, gel; held out: marker, pencil, ballpoint red
    light   even, gradient, side shadow; held out: spot (a lamp's bright patch and dark corners),
            dim (a dark room: the page a third as bright, its noise the larger)

and within each, continuous parameters: paper tint, line spacing and colour, pen width (1.5-6% of
the digit's height), ink darkness, digit height (15-45% of the frame), position, rotation (+-8
degrees), blur, sensor noise, JPEG quality (55-95) and frame size (640x480 to 800x600, either way
up). The digits' shapes come from MNIST images (real handwriting) redrawn with a pen: thinned to
one centre line (Zhang & Suen), then stroked at the pen's width. Non-digit photos are blank pages, pages of text
lines, rooms (shapes and textures, no writing) and two to four digits side by side.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

PAPERS, HELD_OUT_PAPERS = ("plain", "ruled", "squared"), ("dotted", "kraft", "sticky")
INKS, HELD_OUT_INKS = ("ballpoint-black", "ballpoint-blue", "gel"), ("marker", "pencil", "ballpoint-red")
LIGHTS, HELD_OUT_LIGHTS = ("even", "gradient", "shadow"), ("spot", "dim")
NON_DIGITS = ("blank", "text", "room", "several")
INK_RGB = {
    "ballpoint-black": (0.18, 0.18, 0.22), "ballpoint-blue": (0.18, 0.28, 0.68), "gel": (0.1, 0.1, 0.14),
    "marker": (0.08, 0.08, 0.1), "pencil": (0.42, 0.42, 0.45), "ballpoint-red": (0.72, 0.16, 0.18),
}  # fmt: skip
PEN_WIDTH = {  # of the digit's height
    "ballpoint-black": (0.015, 0.035), "ballpoint-blue": (0.015, 0.035), "gel": (0.03, 0.05),
    "marker": (0.08, 0.13), "pencil": (0.015, 0.03), "ballpoint-red": (0.015, 0.035),
}  # fmt: skip


@dataclass(frozen=True)
class Photo:
    label: int | None  # None: not one digit
    kind: dict[str, str]  # paper, ink, light; or "non_digit": what it shows
    jpeg: bytes

    @property
    def held_out(self) -> bool:
        held = set(HELD_OUT_PAPERS) | set(HELD_OUT_INKS) | set(HELD_OUT_LIGHTS)
        return bool(held & set(self.kind.values()))


def pen_mask(digit: np.ndarray, height: int, pen: str, rng: np.random.Generator) -> np.ndarray:
    """An MNIST digit (28x28 uint8) redrawn `height` px tall with a pen: float32 coverage in [0, 1]."""
    return redraw(digit, height, max(1.5, height * rng.uniform(*PEN_WIDTH[pen])))


def redraw(digit: np.ndarray, height: int, width: float) -> np.ndarray:
    """An MNIST digit (28x28 uint8) thinned to its skeleton and stroked `width` px wide at `height` px."""
    scale = height / 20  # MNIST's digits are 20 px in the 28 px frame
    size = max(8, round(28 * scale))
    big = cv2.resize(digit, (size, size), interpolation=cv2.INTER_CUBIC)
    big = cv2.GaussianBlur(big, (0, 0), max(0.5, scale / 3))
    mask = (big > 110).astype(np.uint8)
    # Zhang & Suen's thinning: one connected centre line, as a pen draws it. (A morphological
    # skeleton left spurs at every stroke's end and turned many 6s into 4s.)
    centre = cv2.ximgproc.thinning(mask * 255, thinningType=cv2.ximgproc.THINNING_ZHANGSUEN) // 255
    core = cv2.dilate(centre, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    dist = cv2.distanceTransform(1 - core, cv2.DIST_L2, 3)
    return np.clip(width / 2 + 0.5 - dist, 0, 1).astype(np.float32)  # anti-aliased stroke edges


def _paper(h: int, w: int, paper: str, rng: np.random.Generator) -> np.ndarray:
    if paper == "kraft":
        tint = (0.78, 0.66, 0.5)
    elif paper == "sticky":  # a yellow sticky note
        tint = (0.97, 0.9, rng.uniform(0.4, 0.6))
    else:
        tint = tuple(rng.uniform(0.9, 0.98) - np.array([0, 0.01, 0.04]) * rng.random())
    page = np.empty((h, w, 3), np.float32)
    page[...] = tint
    line = np.array(rng.choice([(0.55, 0.7, 0.9), (0.6, 0.6, 0.65), (0.5, 0.75, 0.85)]), np.float32)
    strength = rng.uniform(0.25, 0.6)
    colour = tuple((1 - strength + strength * line).tolist())
    spacing = int(rng.uniform(22, 42)) if paper == "ruled" else int(rng.uniform(16, 30))
    thick = int(rng.integers(1, 3))
    offset = int(rng.integers(0, spacing))
    if paper in ("ruled", "squared"):
        for y in range(offset, h, spacing):
            page[y : y + thick] *= colour
        if paper == "squared":
            for x in range(offset, w, spacing):
                page[:, x : x + thick] *= colour
        elif rng.random() < 0.5:  # a margin
            x = int(rng.uniform(0.08, 0.2) * w)
            page[:, x : x + 2] *= (0.95, 0.55, 0.6)
    elif paper == "dotted":
        for y in range(offset, h, spacing):
            for x in range(offset, w, spacing):
                cv2.circle(page, (x, y), 1, tuple(float(c) * float(t) for c, t in zip(colour, tint, strict=True)), -1)
    return page


def _light(h: int, w: int, light: str, rng: np.random.Generator) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    if light == "even":
        return np.full((h, w), rng.uniform(0.85, 1.0), np.float32)
    if light == "dim":  # a dim room: a dark page, its noise the larger for it, and a slight gradient
        low = rng.uniform(0.3, 0.45)
        return np.full((h, w), low, np.float32) * (0.9 + 0.1 * np.linspace(0, 1, w, dtype=np.float32))[None, :]
    angle = rng.uniform(0, 2 * np.pi)
    t = (np.cos(angle) * (xs / w - 0.5) + np.sin(angle) * (ys / h - 0.5)) + 0.5  # 0..1 across the page
    if light == "gradient":
        low = rng.uniform(0.55, 0.85)
        return (low + (1 - low) * np.clip(t, 0, 1)).astype(np.float32)
    if light == "shadow":  # a soft shadow from one side, e.g. the phone's or a hand's
        edge, soft, depth = rng.uniform(0.15, 0.45), rng.uniform(0.03, 0.12), rng.uniform(0.35, 0.65)
        return (1 - depth / (1 + np.exp((t - edge) / soft))).astype(np.float32) * rng.uniform(0.85, 1)
    cx, cy, r = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h, rng.uniform(0.3, 0.6) * max(h, w)
    spot = np.exp(-(((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * r * r)))
    return (0.5 + 0.6 * spot).astype(np.float32)


def _place(page: np.ndarray, coverage: np.ndarray, ink: str, rng: np.random.Generator, y: int, x: int) -> None:
    h, w = coverage.shape
    darkness = rng.uniform(0.75, 1.0) if ink != "pencil" else rng.uniform(0.5, 0.8)
    if ink.startswith("ballpoint") or ink == "pencil":  # the ball skips, the graphite is grainy
        coverage = coverage * rng.uniform(0.7, 1.0, coverage.shape).astype(np.float32)
    a = (coverage * darkness)[..., None]
    region = page[y : y + h, x : x + w]
    region *= 1 - a * (1 - np.array(INK_RGB[ink], np.float32))


def _finish(page: np.ndarray, light: str, rng: np.random.Generator) -> bytes:
    h, w = page.shape[:2]
    angle = rng.uniform(-8, 8)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, rng.uniform(1.0, 1.1))
    page = cv2.warpAffine(page, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    page *= _light(h, w, light, rng)[..., None]
    sigma = rng.uniform(0, 1.2)
    if sigma > 0.3:
        page = cv2.GaussianBlur(page, (0, 0), sigma)
    page += rng.normal(0, rng.uniform(1.5, 6) / 255, page.shape).astype(np.float32)
    rgb = np.clip(page * 255, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=int(rng.integers(55, 96)))
    return buf.getvalue()


def _frame(rng: np.random.Generator, scale: float = 1.0) -> tuple[int, int]:
    h, w = int(rng.integers(480, 601) * scale), int(rng.integers(640, 801) * scale)
    return (w, h) if rng.random() < 0.3 else (h, w)  # portrait or landscape


def photo(
    digit: np.ndarray, label: int, rng: np.random.Generator, paper: str, ink: str, light: str, scale: float = 1.0
) -> Photo:
    """One photo of an MNIST digit (28x28 uint8) written on paper; `scale` < 1 makes a smaller frame
    (cheaper to make and to read, and read alike: the page is reduced to 20 px of digit anyway)."""
    h, w = _frame(rng, scale)
    page = _paper(h, w, paper, rng)
    height = int(rng.uniform(0.15, 0.45) * h)
    coverage = pen_mask(digit, height, ink, rng)
    ch, cw = coverage.shape
    y = int(rng.uniform(0.05 * h, max(0.05 * h + 1, 0.95 * h - ch)))
    x = int(rng.uniform(0.05 * w, max(0.05 * w + 1, 0.95 * w - cw)))
    ch, cw = min(ch, h - y), min(cw, w - x)
    _place(page, coverage[:ch, :cw], ink, rng, y, x)
    return Photo(label, {"paper": paper, "ink": ink, "light": light}, _finish(page, light, rng))


def photo_of_writing(
    coverage: np.ndarray,
    rng: np.random.Generator,
    paper: str = "plain",
    ink: str = "ballpoint-blue",
    light: str = "gradient",
    width: float = 0.7,
) -> bytes:
    """Writing of any kind (float32 coverage in [0, 1], e.g. a written number) on paper, photographed:
    `width` of the frame wide, anywhere in it. JPEG bytes."""
    h, w = _frame(rng)
    w, h = max(w, h), min(w, h)  # landscape: a number is wide
    page = _paper(h, w, paper, rng)
    scale = width * w / coverage.shape[1]
    if coverage.shape[0] * scale > 0.8 * h:
        scale = 0.8 * h / coverage.shape[0]
    size = (max(1, int(coverage.shape[1] * scale)), max(1, int(coverage.shape[0] * scale)))
    big = cv2.resize(coverage, size, interpolation=cv2.INTER_AREA)
    y = int(rng.uniform(0.05 * h, max(0.05 * h + 1, 0.95 * h - size[1])))
    x = int(rng.uniform(0.05 * w, max(0.05 * w + 1, 0.95 * w - size[0])))
    _place(page, big[: h - y, : w - x], ink, rng, y, x)
    return _finish(page, light, rng)


def _kinds(rng: np.random.Generator, held_out: bool | None) -> tuple[str, ...]:
    """(paper, ink, light), as `recipe` draws them."""
    return recipe(rng, [(PAPERS, HELD_OUT_PAPERS), (INKS, HELD_OUT_INKS), (LIGHTS, HELD_OUT_LIGHTS)], held_out)


def recipe(rng: np.random.Generator, pools: list[tuple[tuple, tuple]], held_out: bool | None) -> tuple[str, ...]:
    """One kind from each (fitted, held-out) pool: only fitted kinds (held_out False), at least one
    held-out kind (True), or any (None)."""
    if held_out is None:
        return tuple(str(rng.choice(a + b)) for a, b in pools)
    if not held_out:
        return tuple(str(rng.choice(a)) for a, _ in pools)
    which = int(rng.integers(0, len(pools)))
    return tuple(str(rng.choice(b if i == which else a + b)) for i, (a, b) in enumerate(pools))


def photo_set(
    digits: np.ndarray, labels: np.ndarray, seed: int, held_out: bool | None = False, scale: float = 1.0
) -> Iterator[Photo]:
    """A photo of each digit (n, 28, 28) uint8 in turn, each of a recipe drawn as `_kinds` says."""
    rng = np.random.default_rng(seed)
    for digit, label in zip(digits, labels, strict=True):
        paper, ink, light = _kinds(rng, held_out)
        yield photo(digit, int(label), rng, paper, ink, light, scale)


def non_digit_photo(kind: str, rng: np.random.Generator, digits: np.ndarray, scale: float = 1.0) -> Photo:
    """A photo that holds no single digit: `kind` among NON_DIGITS."""
    h, w = _frame(rng, scale)
    paper, ink, light = str(rng.choice(PAPERS)), str(rng.choice(INKS)), str(rng.choice(LIGHTS))
    page = _paper(h, w, paper, rng)
    if kind == "text":
        scale, mask = rng.uniform(0.5, 0.9), np.zeros((h, w), np.uint8)
        for i, y in enumerate(range(int(0.12 * h), int(0.9 * h), int(rng.uniform(28, 45)))):
            letters = list("abcdefghijklmnopqrstuvwxyz")
            words = " ".join("".join(rng.choice(letters, rng.integers(2, 8))) for _ in range(8))
            font = int(rng.choice([0, 2, 6]))
            cv2.putText(mask, words, (int(0.06 * w), y), font, scale, 255, 1 + i % 2, cv2.LINE_AA)
        _place(page, mask.astype(np.float32) / 255, ink, rng, 0, 0)
    elif kind == "room":
        page[...] = rng.uniform(0.3, 0.9, 3)
        for _ in range(int(rng.integers(4, 10))):
            p1 = (int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h)))
            p2 = (p1[0] + int(rng.integers(w // 8, w // 2)), p1[1] + int(rng.integers(h // 8, h // 2)))
            cv2.rectangle(page, p1, p2, tuple(float(c) for c in rng.uniform(0.05, 1, 3)), -1)
        page = cv2.GaussianBlur(page, (0, 0), rng.uniform(1, 4))
    elif kind == "several":
        n = int(rng.integers(2, 5))
        height = int(rng.uniform(0.15, 0.3) * h)
        x, y = int(rng.uniform(0.05, 0.2) * w), int(rng.uniform(0.2, 0.6) * h)
        for digit in digits[rng.choice(len(digits), n)]:
            coverage = pen_mask(digit, height, ink, rng)
            ch, cw = min(coverage.shape[0], h - y), min(coverage.shape[1], w - x)
            if cw <= 0:
                break
            _place(page, coverage[:ch, :cw], ink, rng, y, x)
            x += int(cw * rng.uniform(0.7, 1.0))
    return Photo(None, {"non_digit": kind, "paper": paper, "light": light}, _finish(page, light, rng))


def non_digit_set(n: int, seed: int, digits: np.ndarray, scale: float = 1.0) -> Iterator[Photo]:
    """n photos that hold no single digit, the kinds in turn."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        yield non_digit_photo(NON_DIGITS[i % len(NON_DIGITS)], rng, digits, scale)

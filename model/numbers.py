"""Reading a number: from what is written on an image to its digits, left to right.

Connected components alone break on real handwriting: a 5's flag, a 4 in two strokes or a 7's
crossbar is a digit in several pieces, and two digits whose strokes touch are one piece. So this is
recognition-based segmentation, as in classic OCR:

1. `pieces`: the ink's connected components; a piece wider than a digit can be is cut where its
   vertical ink profile is thinnest (where two touching digits meet), into several candidate parts;
2. short marks well away from the digits' height (a dash, a dot) are set aside as marks, reported;
3. every run of up to MAX_PER_DIGIT neighbouring parts that could be one digit (not wider than a
   digit, no clear space inside) is cut out and read by the network, all in one batch, and judged
   by the segment verifier (model.segments: is this one whole digit, or a fragment, or two?);
4. `best_reading`: dynamic programming picks the split of all parts into digits whose readings are
   most confident together; when a split into another number of digits is nearly as good, or the
   verifier doubts a chosen run, the reading is `ambiguous` rather than silently a digit short (or
   long).

The same steps read canvas drawings and photos of paper (model.photos cleans a photo first, and
finishes each digit's strokes to MNIST's proportions); each digit then goes through
model.images.to_mnist, the recipe every other input follows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Protocol

import cv2
import numpy as np
from PIL import Image

from model import photos
from model.images import ImageError, has_alpha, ink_image, load, to_mnist
from model.predictor import Answers

MAX_DIGITS = 12
MAX_PIECES = 60  # connected components after specks are dropped: more is a page of writing
MAX_PER_DIGIT = 12  # parts one digit is made of at most (slices of a wide piece, DENSE_SPACING apart)
MAX_WIDTH = 1.5  # a digit's width at most, in line heights (a wide 0, slanted, 15% taller)
CUT_FROM = 0.6  # pieces wider than this (in line heights) may be two or more touching digits
MAX_CUTS = 10  # per piece, at the thinnest places of its profile
DENSE_FROM = 1.0  # pieces wider than this (in line heights) are also sliced evenly: surely two digits or more
DENSE_SPACING = 0.1  # of the line height, between those slices
CUT_SPACING = 0.2  # of the line height, between two cuts of a piece
CUT_MARGIN = 0.15  # of the line height: no cut nearer a piece's end
LINK_GAP = 0.06  # parts further apart than this (in line heights) are never one digit
MIN_HEIGHT = 0.55  # a digit is at least this tall (in line heights): shorter runs are a digit's fragments
MARK_HEIGHT = 0.35  # a group shorter than this (in line heights) is a mark: a dash, a dot
WHOLE_WEIGHT = 2.0  # of the verifier's log P(whole digit) beside the network's log confidence (tuned)
DETECTOR_WEIGHT = 1.0  # of the detector's log P(a digit) (tuned)
DETECTOR_CAP = 1.5  # in log units (tuned; 2.0 let an A lose to its two halves read as 1 and 4)
DIGIT_BONUS = 0.3  # added per digit to the summed log-confidence (tuned)
CUT_COST = 0.5  # taken per cut through a piece of ink: touching digits are rarer than whole ones (tuned)
# A split into another count of digits within this (in log units) is ambiguous. 0.3 rather than 0.1:
# numbers silently a digit short or long, apart 1.7% -> 1.4%, touching 7.9% -> 5.4%, for 4 and 2 points
# of "exact and sure" (bench_numbers --seed 12; chosen on the tuning set, where apart went 0.9% -> 0%).
COUNT_MARGIN = 0.3
WHOLE_DOUBT = 0.5  # a chosen run the verifier gives less than this of being one whole digit: ambiguous
MARK_WHOLE, MARK_NOT_DIGIT = 0.9, 0.99  # a whole piece this sure to be one mark and no digit is never cut
CUT_SURE = 0.9  # the cut-digit reader's probability below which a cut digit's answer is "not sure"
MASK_LEVEL = 0.25  # of the strongest ink: a canvas's ink pixel
TOO_MANY = f"more than {MAX_DIGITS} digits: this reads numbers of 1 to {MAX_DIGITS} digits"


@dataclass(frozen=True)
class Page:
    """What is written on an image, at the resolution it is read."""

    ink: np.ndarray  # float32 (h, w) in [0, 1], ink bright (for a photo: the cleaned marks)
    mask: np.ndarray  # uint8 (h, w), 1 = ink
    photo: bool  # a photo or scan of paper: each digit's strokes are finished by model.photos
    scale: tuple[float, float]  # the image's own pixels per page pixel, (x, y)
    origin: tuple[int, int]  # where the page's (0, 0) is in the image, in page pixels

    def box(self, x0: int, y0: int, x1: int, y1: int) -> tuple[int, int, int, int]:
        """A box in page pixels (x1, y1 exclusive) -> (x, y, width, height) in the image's own pixels."""
        sx, sy = self.scale
        ox, oy = self.origin
        left, top = int((x0 + ox) * sx), int((y0 + oy) * sy)
        return left, top, max(1, round((x1 + ox) * sx) - left), max(1, round((y1 + oy) * sy) - top)


def read_page(img: Image.Image) -> Page:
    """An opened image -> its Page: decoded as model.images does, a photo cleaned by model.photos."""
    original = img.size
    img = load(img)
    turned = (img.size[0] > img.size[1]) != (original[0] > original[1])  # the camera's orientation
    ow, oh = original[::-1] if turned else original
    scale = (ow / img.size[0], oh / img.size[1])
    if not has_alpha(img):
        gray = np.asarray(img.convert("L"))
        if not photos.is_clean(gray):
            marks, reduced = photos.marks_of_page(gray)
            if not marks.any():
                raise ImageError("blank", "no writing found on the photo")
            return Page(marks.astype(np.float32), marks, True, (scale[0] * reduced, scale[1] * reduced), (0, 0))
    ink, origin = ink_image(img)
    page = page_of_ink(ink)
    return Page(page.ink, page.mask, False, scale, origin)


def page_of_ink(ink: np.ndarray) -> Page:
    """Ink already decoded (pixels in [0, 1], bright on black) as a Page in its own pixels."""
    peak = float(ink.max())
    if peak < 40 / 255:
        raise ImageError("blank", "no ink found: the image is blank")
    return Page(ink.astype(np.float32), (ink >= MASK_LEVEL * peak).astype(np.uint8), False, (1.0, 1.0), (0, 0))


@dataclass(frozen=True)
class Part:
    """A piece of ink, or a slice of one: the atoms a digit is made of."""

    id: int  # its value in the parts' label image
    piece: int  # the connected component it is (a slice of)
    x0: int
    y0: int
    x1: int  # exclusive
    y1: int

    @property
    def centre(self) -> float:
        return (self.x0 + self.x1) / 2


@dataclass(frozen=True)
class Mark:
    kind: str  # "dash" or "dot"
    box: tuple[int, int, int, int]  # (x, y, width, height) in the image's own pixels
    x: float  # its centre, in page pixels, for the reading order


@dataclass(frozen=True)
class Digit:
    box: tuple[int, int, int, int]  # (x, y, width, height) in the image's own pixels
    pixels: np.ndarray  # (28, 28): what the network read
    row: int  # this digit's row in `answers`
    x: float


@dataclass(frozen=True)
class Reading:
    digits: list[Digit]
    marks: list[Mark]
    answers: Answers  # the network's answers for the digits, in order
    ambiguous: bool  # another count of digits reads nearly as well

    def text(self) -> str:
        """The digits left to right with the marks among them: "12-34", "3.5"; "?" for a digit the
        detector says is not one."""
        items = [(d.x, str(int(np.argmax(self.answers.probabilities[d.row]))), d.row) for d in self.digits]
        items += [(m.x, "-" if m.kind == "dash" else ".", None) for m in self.marks]
        return "".join(
            "?" if row is not None and self.answers.is_not_digit[row] else ch for _, ch, row in sorted(items)
        )


Classify = Callable[[np.ndarray, bool], Answers]

SLANTS = np.linspace(-0.7, 0.7, 29)  # shears tried (x per y): italic writing leans up to ~35 degrees


def slant(mask: np.ndarray) -> float:
    """The writing's slant, as the shear that makes its strokes most upright: the one whose column
    profile is most peaked (largest sum of squares), as in classic slant correction."""
    ys, xs = np.nonzero(mask)
    best, best_s = -1.0, 0.0
    for s in SLANTS:
        at = xs + s * ys
        at -= at.min()
        i = at.astype(np.int64)
        frac = at - i  # split between two columns: rounding would alias at slopes like 1/2
        counts = np.bincount(i, 1 - frac, i.max() + 2) + np.bincount(i + 1, frac, i.max() + 2)
        score = float(np.dot(counts, counts))
        if score > best + 1e-9 or (abs(score - best) <= 1e-9 and abs(s) < abs(best_s)):
            best, best_s = score, float(s)
    return best_s


def _shear(a: np.ndarray, s: float, inverse_to: tuple[int, int] | None = None) -> np.ndarray:
    """x' = x + s * y + shift (shift keeps x' >= 0); with `inverse_to` (h, w), back to the original's
    frame. Nearest neighbour: labels stay labels."""
    h = a.shape[0]
    shift = max(0.0, -s * h)
    if inverse_to is None:
        m = np.float32([[1, s, shift], [0, 1, 0]])
        size = (a.shape[1] + int(np.ceil(abs(s) * h)) + 1, h)
    else:
        m = np.float32([[1, -s, -shift], [0, 1, 0]])
        size = (inverse_to[1], inverse_to[0])
    return cv2.warpAffine(a, m, size, flags=cv2.INTER_NEAREST)  # (m, 784) inputs, from a photo? -> answers


def _pieces(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The connected components worth reading: (labels, stats rows of the kept ones, with their label
    in column 5); specks (anti-aliasing crumbs, dust) are dropped."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        raise ImageError("blank", "no ink found: the image is blank")
    area = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(area >= max(4, 0.004 * area.max())) + 1
    return labels, np.column_stack([stats[keep], keep])


def _groups(stats: np.ndarray) -> list[list[int]]:
    """Pieces grouped while they overlap horizontally (by half the narrower one, or they are one
    digit's strokes): the rough digits, for the line height and for telling marks from digits."""
    order = np.argsort(stats[:, 0])
    groups: list[list[int]] = []
    ends: list[tuple[int, int]] = []
    for i in order:
        x, w = int(stats[i, 0]), int(stats[i, 2])
        if groups:
            g0, g1 = ends[-1]
            overlap = min(g1, x + w) - max(g0, x)
            if overlap >= 0.5 * min(w, g1 - g0):
                groups[-1].append(int(i))
                ends[-1] = (g0, max(g1, x + w))
                continue
        groups.append([int(i)])
        ends.append((x, x + w))
    return groups


def _extent(stats: np.ndarray, group: list[int]) -> tuple[int, int, int, int]:
    s = stats[group]
    return (
        int(s[:, 0].min()),
        int(s[:, 1].min()),
        int((s[:, 0] + s[:, 2]).max()),
        int((s[:, 1] + s[:, 3]).max()),
    )


def _cuts(labels: np.ndarray, label: int, box: tuple[int, int, int, int], line: float, pen: float) -> list[int]:
    """Columns where a wide piece may be two touching digits: the thinnest places of its vertical
    profile, away from its ends; in a piece wider than DENSE_FROM, also every DENSE_SPACING. Where
    digits overlap, the join is often no thinner than a stroke: an oracle check on test-digit numbers
    found the right split among the candidates for 57% of touching numbers with the thinnest places
    alone, 89% with the even slices too."""
    x0, y0, x1, y1 = box
    profile = (labels[y0:y1, x0:x1] == label).sum(axis=0).astype(np.float32)
    k = max(1, int(pen / 2)) | 1
    smooth = np.convolve(profile, np.ones(k, np.float32) / k, mode="same")
    margin = int(max(pen, CUT_MARGIN * line))
    found = []
    for c in range(margin, len(smooth) - margin):
        lo, hi = max(0, c - k), min(len(smooth), c + k + 1)
        if smooth[c] <= smooth[lo:hi].min() + 1e-6:
            found.append((float(smooth[c]), c))
    chosen: list[int] = []
    for _, c in sorted(found):
        if all(abs(c - o) >= CUT_SPACING * line for o in chosen):
            chosen.append(c)
        if len(chosen) == MAX_CUTS:
            break
    width = x1 - x0
    if DENSE_FROM * line < width <= MAX_DIGITS * MAX_WIDTH * line:  # wider: more digits than are read
        step = max(1.0, DENSE_SPACING * line)
        even = np.arange(margin, width - margin, step).astype(int)
        chosen += [int(c) for c in even if all(abs(c - o) >= step / 2 for o in chosen)]
    return sorted(x0 + c for c in chosen)


def _parts(
    labels: np.ndarray, stats: np.ndarray, digit_pieces: list[int], line: float, pen: float
) -> tuple[np.ndarray, list[Part]]:
    """The digits' pieces, wide ones sliced at their candidate cuts: a label image and the parts."""
    out = np.zeros(labels.shape, np.int32)
    parts: list[Part] = []
    for i in digit_pieces:
        x, y, w, h, _, label = (int(v) for v in stats[i])
        piece = (labels[y : y + h, x : x + w] == label).astype(np.uint8)
        cuts = _cuts(labels, label, (x, y, x + w, y + h), line, pen) if w > CUT_FROM * line else []
        # Straight cuts in the upright frame: a least-ink path (seam) around each was measured worse,
        # 35% of touching numbers exact against 48%: it wanders through a neighbour's loops.
        slice_of = np.searchsorted(np.array(cuts, np.int64) - x, np.arange(w), side="right")[None, :].repeat(h, 0)
        for k in range(len(cuts) + 1):
            region = (slice_of == k) & (piece > 0)
            rows, cols_k = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
            if not len(rows):
                continue
            pid = len(parts) + 1
            out[y : y + h, x : x + w][region] = pid
            parts.append(
                Part(pid, label, x + int(cols_k[0]), y + int(rows[0]), x + int(cols_k[-1]) + 1, y + int(rows[-1]) + 1)
            )
    return out, parts


def _linked(parts: list[Part], line: float) -> bool:
    """No clear space inside: the parts' horizontal extents, sorted, leave no gap wider than LINK_GAP."""
    spans = sorted((p.x0, p.x1) for p in parts)
    reach = spans[0][1]
    for a, b in spans[1:]:
        if a - reach > LINK_GAP * line:
            return False
        reach = max(reach, b)
    return True


def _digit_ink(
    page: Page, labels: np.ndarray, ids: list[int], box: tuple[int, int, int, int]
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The ink of these parts only (their neighbours' strokes in the same box left out), with the soft
    anti-aliased edge around them, and its box in page pixels. `labels`: the parts in the page's
    frame, `box` a box there that holds them."""
    x0, y0, x1, y1 = box
    pad = 3
    x0, y0 = max(0, x0 - pad), max(0, y0 - pad)
    x1, y1 = min(page.mask.shape[1], x1 + pad), min(page.mask.shape[0], y1 + pad)
    ink_mask = page.mask[y0:y1, x0:x1]
    # The labels came back from the upright frame by nearest neighbour: heal their one-pixel holes.
    mine = cv2.dilate(np.isin(labels[y0:y1, x0:x1], ids).astype(np.uint8), np.ones((3, 3), np.uint8)) & ink_mask
    rows, cols = np.flatnonzero(mine.any(axis=1)), np.flatnonzero(mine.any(axis=0))
    if not len(rows):
        return np.zeros((1, 1), np.float32), (x0, y0, x0 + 1, y0 + 1)
    tight = (x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]) + 1, y0 + int(rows[-1]) + 1)
    if page.photo:
        return photos.finish(mine), tight
    edge = cv2.dilate(mine, np.ones((5, 5), np.uint8)) & (ink_mask == 0)
    return page.ink[y0:y1, x0:x1] * ((mine | edge) > 0), tight


def _unshear_box(box: tuple[int, int, int, int], s: float, h: int) -> tuple[int, int, int, int]:
    """A box in the upright frame -> a box in the page's frame that holds everything it held."""
    x0, y0, x1, y1 = box
    shift = max(0.0, -s * h)
    xs = [x - s * y - shift for x in (x0, x1) for y in (y0, y1)]
    return int(np.floor(min(xs))) - 1, y0, int(np.ceil(max(xs))) + 1, y1


def best_reading(scores: dict[tuple[int, int], float], n: int) -> tuple[list[tuple[int, int]], float, float]:
    """Parts 0..n-1 split into runs (i, j) (parts i..j-1 one digit) maximising the sum of the runs'
    scores: (the runs, the best total, the best total with another count of digits)."""
    best = np.full((n + 1, MAX_DIGITS + 2), -np.inf)  # best[j, k]: parts 0..j-1 as k digits
    back = np.zeros((n + 1, MAX_DIGITS + 2), np.int64)
    best[0, 0] = 0.0
    for j in range(1, n + 1):
        for i in range(max(0, j - MAX_PER_DIGIT), j):
            s = scores.get((i, j))
            if s is None:
                continue
            cand = best[i, :-1] + s
            better = cand > best[j, 1:]
            best[j, 1:][better] = cand[better]
            back[j, 1:][better] = i
    k = int(np.argmax(best[n]))
    if not np.isfinite(best[n, k]):
        return [], -np.inf, -np.inf
    others = np.delete(best[n], k)
    runs, j = [], n
    for kk in range(k, 0, -1):
        i = int(back[j, kk])
        runs.append((i, j))
        j = i
    return runs[::-1], float(best[n, k]), float(others.max())


@dataclass(frozen=True)
class Candidates:
    """Every run of parts that could be one digit, cut out: what the network and the verifier judge."""

    parts: list[Part]  # left to right
    runs: list[tuple[int, int]]  # parts i..j-1
    crops: np.ndarray  # (m, 28, 28): each run as the network reads it
    boxes: list[tuple[int, int, int, int]]  # each run's ink, (x0, y0, x1, y1) in page pixels
    shape: np.ndarray  # (m, N_SHAPE) float32: where each run sits among the parts (see `candidates`)
    marks: list[Mark]


N_SHAPE = 6


def _line_and_marks(
    page: Page, stats: np.ndarray, groups: list[list[int]], s: float
) -> tuple[float, float, list[Mark], list[int]]:
    """(the line height and the height of its middle, from the tall groups; the marks, groups much
    shorter than the line; the pieces of the digits)."""
    extents = [_extent(stats, g) for g in groups]
    heights = np.array([e[3] - e[1] for e in extents], float)
    tall = heights >= 0.6 * heights.max()
    line = float(np.median(heights[tall]))
    middle = float(np.median([(e[1] + e[3]) / 2 for e, t in zip(extents, tall, strict=True) if t]))
    marks, digit_pieces = [], []
    for g, (x0, y0, x1, y1) in zip(groups, extents, strict=True):
        if y1 - y0 < MARK_HEIGHT * line and len(groups) > 1:
            kind = "dash" if x1 - x0 >= 1.6 * (y1 - y0) else "dot"
            bx0, by0, bx1, by1 = _unshear_box((x0, y0, x1, y1), s, page.mask.shape[0])
            marks.append(Mark(kind, page.box(max(0, bx0), by0, min(page.mask.shape[1], bx1), by1), (x0 + x1) / 2))
        else:
            digit_pieces += g
    return line, middle, marks, digit_pieces


def candidates(page: Page) -> Candidates:
    """A page -> its candidate digits and marks; raises ImageError for a blank page, or one with more
    than MAX_DIGITS digits or far more pieces than a number has."""
    s = slant(page.mask)
    upright = _shear(page.mask, s)  # segmentation is done with the writing's strokes made upright
    labels, stats = _pieces(upright)
    if len(stats) > MAX_PIECES:
        raise ImageError(
            "not_a_number",
            f"the image holds {len(stats)} separate marks: more than a number of at most {MAX_DIGITS} digits",
        )
    groups = _groups(stats)
    line, middle, marks, digit_pieces = _line_and_marks(page, stats, groups, s)
    if len(groups) - len(marks) > MAX_DIGITS:
        raise ImageError("not_a_number", TOO_MANY)
    h = page.mask.shape[0]
    dist = cv2.distanceTransform(page.mask, cv2.DIST_L2, 3)
    pen = 4 * float(dist[page.mask > 0].mean())  # a strip of width w averages w / 4
    part_labels, parts = _parts(labels, stats, digit_pieces, line, pen)
    page_labels = _shear(part_labels.astype(np.uint16), s, inverse_to=page.mask.shape)
    parts.sort(key=lambda p: p.centre)
    runs, crops, boxes, shape = [], [], [], []
    for j in range(1, len(parts) + 1):
        for i in range(max(0, j - MAX_PER_DIGIT), j):
            run = parts[i:j]
            box = (min(p.x0 for p in run), min(p.y0 for p in run), max(p.x1 for p in run), max(p.y1 for p in run))
            if box[2] - box[0] > MAX_WIDTH * line or box[3] - box[1] < MIN_HEIGHT * line or not _linked(run, line):
                continue
            ink, tight = _digit_ink(page, page_labels, [p.id for p in run], _unshear_box(box, s, h))
            runs.append((i, j))
            crops.append(to_mnist(ink))
            boxes.append(tight)
            # Upright width and height, and height of its middle, in line heights; whether it was cut
            # from a piece on the left, on the right; how many parts.
            shape.append(
                (
                    (box[2] - box[0]) / line,
                    (box[3] - box[1]) / line,
                    ((box[1] + box[3]) / 2 - middle) / line,
                    float(i > 0 and parts[i - 1].piece == parts[i].piece),
                    float(j < len(parts) and parts[j - 1].piece == parts[j].piece),
                    (j - i) / MAX_PER_DIGIT,
                )
            )
    if not runs:
        raise ImageError("blank", "no ink found: the image is blank")
    return Candidates(parts, runs, np.stack(crops), boxes, np.array(shape, np.float32), marks)


def _cuts_through_marks(c: Candidates, whole: np.ndarray, not_digit: np.ndarray) -> np.ndarray:
    """(m,) bool: the runs that cut into a piece the verifier takes for one whole mark and the detector
    for no digit at all (a letter among digits): such a piece is read whole, as a "?". Its halves
    otherwise read as digits (an A's as a 1 and a 4), and the capped detector cannot outweigh them."""
    single = (c.shape[:, 3] == 0) & (c.shape[:, 4] == 0)
    marks = {
        c.parts[i].piece
        for r, (i, j) in enumerate(c.runs)
        if single[r] and whole[r] >= MARK_WHOLE and not_digit[r] >= MARK_NOT_DIGIT
        and len({p.piece for p in c.parts[i:j]}) == 1
    }  # fmt: skip
    cut_pieces = [
        ({c.parts[i].piece} if c.shape[r, 3] else set()) | ({c.parts[j - 1].piece} if c.shape[r, 4] else set())
        for r, (i, j) in enumerate(c.runs)
    ]
    return np.array([bool(p & marks) for p in cut_pieces], bool)


def read_number(page: Page, classify: Classify, verifier: Verifier | None = None) -> Reading:
    """A page -> its digits, left to right, and marks, as `candidates` finds them and the network and
    the verifier (by default the shipped one, model.segments) judge them."""
    c = candidates(page)
    verifier = verifier if verifier is not None else default_verifier()
    answers = classify(c.crops.reshape(len(c.crops), -1), page.photo)
    confidence = answers.probabilities.max(axis=1)
    whole, whole_mark = verifier.judge(c) if verifier else (np.ones(len(c.runs)),) * 2
    score = np.log(confidence) + DIGIT_BONUS
    if verifier:
        score += WHOLE_WEIGHT * np.log(np.maximum(whole, 1e-4))
    if answers.not_digit is not None:  # two digits as one look like no digit to the detector
        # Capped: a letter must still lose to nothing worse than its own slivers read as 1s.
        score -= np.minimum(DETECTOR_CAP, -DETECTOR_WEIGHT * np.log1p(-np.minimum(answers.not_digit, 0.999)))
    score -= CUT_COST * c.shape[:, 3]
    if answers.not_digit is not None:
        score[_cuts_through_marks(c, whole_mark, answers.not_digit)] = -np.inf
    scores = {run: v for run, v in zip(c.runs, score.tolist(), strict=True) if v > -np.inf}
    chosen, total, other = best_reading(scores, len(c.parts))
    if len(chosen) > MAX_DIGITS:
        raise ImageError("not_a_number", TOO_MANY)
    row_of = {r: i for i, r in enumerate(c.runs)}
    rows = [row_of[r] for r in chosen]
    digits = [
        Digit(
            page.box(*c.boxes[r]), c.crops[r], k, (c.parts[c.runs[r][0]].centre + c.parts[c.runs[r][1] - 1].centre) / 2
        )
        for k, r in enumerate(rows)
    ]
    probabilities, uncertain = answers.probabilities[rows], answers.uncertain[rows]
    cut = (c.shape[rows, 3] + c.shape[rows, 4]) > 0
    if cut.any() and verifier is not None and verifier.reader is not None:
        # A digit cut from touching ink is read by the network that learnt such cuts (model.segments):
        # 94% right on cuts of test-digit numbers, where the served classifier is 72% right (tested).
        probabilities, uncertain = probabilities.copy(), uncertain.copy()
        probabilities[cut] = verifier.read(c.crops[rows][cut].reshape(int(cut.sum()), -1))
        uncertain[cut] = probabilities[cut].max(axis=1) < CUT_SURE
    picked = Answers(
        probabilities,
        answers.not_digit[rows] if answers.not_digit is not None else None,
        answers.is_not_digit[rows],
        uncertain,
    )
    # In doubt about the split: another count of digits reads nearly as well, or the verifier doubts
    # that a chosen run is one whole digit.
    doubt = total - other < COUNT_MARGIN or bool((whole[rows] < WHOLE_DOUBT).any())
    return Reading(digits, sorted(c.marks, key=lambda m: m.x), picked, doubt)


class Verifier(Protocol):
    """`judge`: Candidates -> (m,) P(the run is exactly one whole digit) and (m,) P(it is one whole
    mark, a digit or a letter); with a `reader` (or None) that reads the digits of runs cut from
    touching ink, `read`: (k, 784) -> (k, 10) probabilities."""

    reader: object | None

    def judge(self, c: Candidates) -> tuple[np.ndarray, np.ndarray]: ...

    def read(self, crops: np.ndarray) -> np.ndarray: ...


@cache
def default_verifier() -> Verifier | None:
    """The shipped verifier (weights/reader/segments.npz), or None where it is missing (then the network's
    confidence alone judges)."""
    from model import segments

    return segments.load(segments.DEFAULT_PATH) if segments.DEFAULT_PATH.exists() else None

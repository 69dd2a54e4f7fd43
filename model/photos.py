"""Photos and scans of paper: from a page's pixels to the ink of what is written on it.

A canvas drawing or an MNIST-style image has a background of one level, and model.images reads it
as it is. A photo of paper has uneven light, shadows, sensor noise, JPEG blocks and, often, the
paper's own ruled or squared lines; the first steps of every document scanner clean those away
before anything is read, and so does this module, with OpenCV's filters, morphology and connected
components (chosen over scikit-image: 5x faster here on a 1.2-megapixel page, 16 ms against 77 ms
for the same steps, and a smaller install, 153 MB against about 200 MB with SciPy):

1. `flatten_light`: divide the page by its background (a closing wider than any stroke, then a
   blur): a light gradient or a soft shadow becomes flat paper, the ink stays dark;
2. `binarise`: Sauvola's local threshold (the local mean and deviation, from box filters), which
   adapts to what is left of uneven light where one global level fails;
3. `remove_rules`: long thin horizontal and vertical runs that repeat (ruled and squared paper)
   are taken out, but where a stroke crosses a line its pixels are put back, so the digit stays whole;
4. `keep_marks`: connected components: specks smaller than a pen's dot and blobs that touch the
   frame (page edges, shadows, the table) are dropped;
5. `thicken`: a ballpoint digit is thin for its size; its strokes are widened to MNIST's proportions
   (stroke width about 0.14 of the digit's longer side, measured on MNIST's test set).

The result is ink, bright on black, for model.images.to_mnist: the same crop, 20 px box and centre
of mass as every other input.
"""

from __future__ import annotations

import cv2
import numpy as np

cv2.setNumThreads(1)  # one image per request: threads only fight the web processes for the cores

PHOTO_SIDE = 800  # a page is read at most this large: the digit ends up 20 px tall anyway
SAUVOLA_K, SAUVOLA_R = 0.2, 0.5  # Sauvola & Pietikainen's constants, for values in [0, 1]
MNIST_STROKE = 0.14  # stroke width / the digit's longer side, median over MNIST's test set
THIN = 0.10  # below this ratio (MNIST's 10th percentile is 0.11) strokes are widened
MAX_MARKS = 8  # separate marks one written digit makes at most (generated photos: 6; pages of text: 22+)
MARK_SHARE = 0.1  # a mark counts when it has this share of the largest's ink: a pen skip's crumbs do not
FILLED = 0.3  # a mark this wide for its size is a filled shape, not a stroke (MNIST digits: at most 0.29)
SIZEABLE = 0.25  # a mark with this share of the largest's ink is writing wherever it lies
NEAR = 0.35  # a smaller mark is kept within this share of the largest's longer side of the writing
MAX_WEIGHED = 400  # marks weighed one against another at most (a page of text holds ~80)
CLEAN_SLIGHT = 0.065  # at most this share of pixels just off the background: a drawing, not a photo


class TooManyMarks(ValueError):
    """More separate marks than one digit makes: a page of text, a form, a busy scene."""

    def __init__(self, count: int) -> None:
        super().__init__(f"the photo holds {count} separate marks (a page of writing?), not one digit")
        self.count = count


def is_clean(gray: np.ndarray) -> bool:
    """A drawing, an MNIST-style image or a screenshot: many pixels sit exactly at the background's
    level (a fifth at least: a marker drawing may fill half its frame), and few lie just off it
    (anti-aliased edges: under 6% even for an MNIST digit scaled up 10x). A photo's paper never does:
    noise, light and JPEG spread it over many levels (7.8% of the generated photos' pixels or more in
    99 of 100). `gray` is uint8."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    off = np.abs(gray.astype(np.int16) - int(np.median(border)))
    return float(np.mean(off == 0)) >= 0.2 and float(np.mean((off >= 1) & (off <= 12))) <= CLEAN_SLIGHT


def _odd(n: float) -> int:
    return max(3, int(n) | 1)


def flatten_light(gray: np.ndarray) -> np.ndarray:
    """uint8 page, paper bright -> float32 in [0, 1], paper 1 everywhere: the page divided by its light."""
    k = _odd(max(gray.shape) / 16)  # wider than any pen stroke at PHOTO_SIDE
    background = cv2.morphologyEx(gray, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    background = cv2.GaussianBlur(background, (0, 0), k / 4)
    flat = gray.astype(np.float32) / np.maximum(background.astype(np.float32), 1)
    return np.clip(flat, 0, 1)


def binarise(flat: np.ndarray) -> np.ndarray:
    """Sauvola: ink where flat < mean * (1 + k (std / R - 1)) over a window; uint8 mask, 1 = ink."""
    w = _odd(max(flat.shape) / 24)
    mean = cv2.boxFilter(flat, -1, (w, w))
    sq = cv2.boxFilter(flat * flat, -1, (w, w))
    std = np.sqrt(np.maximum(sq - mean * mean, 0))
    threshold = mean * (1 + SAUVOLA_K * (std / SAUVOLA_R - 1))
    # Sensor noise on flat paper sits within a few percent of the paper; ink is darker than that.
    return ((flat < threshold) & (flat < 0.92)).astype(np.uint8)


def _rules(mask: np.ndarray, horizontal: bool) -> np.ndarray:
    """The paper's lines running one way: straight segments (Hough) at least 60% of the page long in
    that direction, tilted as the page may be, faint and broken as a photo makes them. No digit is
    that long: the generated ones are at most 45% of the frame, and a person photographs a digit with
    paper around it."""
    h, w = mask.shape
    length = int(0.6 * (w if horizontal else h))
    found = cv2.HoughLinesP(mask, 1, np.pi / 360, threshold=length // 2, minLineLength=length, maxLineGap=length // 12)
    lines = np.zeros_like(mask)
    for x1, y1, x2, y2 in found.reshape(-1, 4) if found is not None else []:
        if (abs(x2 - x1) > abs(y2 - y1)) == horizontal:
            cv2.line(lines, (int(x1), int(y1)), (int(x2), int(y2)), 1, 3)
    return lines & mask


def remove_rules(mask: np.ndarray) -> np.ndarray:
    """The mask without the paper's ruled or squared lines (or a margin); a stroke that crosses a line is
    kept whole (line pixels with ink on both sides of the line are put back)."""
    out = mask.copy()
    for horizontal in (True, False):
        lines = _rules(mask, horizontal)
        if not lines.any():
            continue
        rest = mask & (1 - lines)
        across = np.ones((7, 1) if horizontal else (1, 7), np.uint8)  # a line is at most ~5 px thick here
        # A pixel of a line is a stroke's if ink continues on both sides of the line there.
        below = cv2.dilate(rest, across, anchor=(0, 0))  # ink below (or right of) the line
        above = cv2.dilate(rest, across, anchor=(0, 6) if horizontal else (6, 0))  # above (or left)
        out &= 1 - lines
        out |= lines & below & above
    return out


def keep_marks(mask: np.ndarray) -> np.ndarray:
    """The components that can be writing: not specks, not blobs touching the frame."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return np.zeros_like(mask)
    h, w = mask.shape
    area = stats[1:, cv2.CC_STAT_AREA]
    x, y = stats[1:, cv2.CC_STAT_LEFT], stats[1:, cv2.CC_STAT_TOP]
    bw, bh = stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT]
    touches = (x == 0) | (y == 0) | (x + bw == w) | (y + bh == h)
    big = area.max()
    speck = area < max(12, 0.03 * big)  # a pen's dot is kept beside its digit, dust is not
    # Writing is strokes; a filled shape (a box, a window, a patch of shadow) is not: its width, 4 x its
    # mean distance to the background, is a large part of its size.
    depth = np.bincount(labels.ravel(), cv2.distanceTransform(mask, cv2.DIST_L2, 3).ravel(), n)[1:] / area
    filled = 4 * depth - 2 > FILLED * np.maximum(bw, bh)  # - 2: a border pixel's distance is 1, not 0.5
    keep = ~speck & ~touches & ~filled
    if not keep.any():
        return np.zeros_like(mask)
    keep &= _near_the_writing(np.stack([x, y, x + bw, y + bh], axis=1), area, keep)
    lut = np.concatenate([np.zeros(1, np.uint8), keep.astype(np.uint8)])
    return lut[labels]


def _near_the_writing(boxes: np.ndarray, area: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Which marks belong to the writing: the sizeable ones (a quarter of the largest's ink at least:
    each digit of several, a 1 beside an 8) and whatever lies near them, a stroke's own crumbs or a
    5's flag; small marks far from all of it are what the paper left (a piece of a line at the page's
    edge, a crease), and would otherwise stretch the crop around the digit. `boxes` (n, 4) x0 y0 x1 y1."""
    if keep.sum() > MAX_WEIGHED:  # print or noise: refused or doubted anyway, and (n, n) gaps would not fit
        return keep
    largest = np.argmax(np.where(keep, area, -1))
    reach = NEAR * max(boxes[largest, 2] - boxes[largest, 0], boxes[largest, 3] - boxes[largest, 1])
    near = keep & (area >= SIZEABLE * area[largest])
    lo, hi = boxes[:, None, :2], boxes[:, None, 2:]  # (n, 1, 2): each mark's x0 y0 and x1 y1
    while True:
        # the gap between each mark's box and each kept one's, per axis: (n, kept, 2)
        gap = np.maximum(0, np.maximum(lo - boxes[None, near, 2:], boxes[None, near, :2] - hi))
        dx, dy = gap[..., 0], gap[..., 1]
        grown = near | (keep & (np.hypot(dx, dy) <= reach).any(axis=1))
        if (grown == near).all():
            return near
        near = grown


def stroke_ratio(mask: np.ndarray) -> float:
    """Stroke width over the marks' longer side: 4 x the mean distance to the background inside a
    stroke is its width (a strip of width w averages w / 4)."""
    ys, xs = np.nonzero(mask)
    side = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    return 4 * float(dist[mask > 0].mean()) / side


def thicken(mask: np.ndarray) -> np.ndarray:
    """Widen thin strokes to MNIST's proportions."""
    ratio = stroke_ratio(mask)
    if ratio >= THIN:
        return mask
    ys, xs = np.nonzero(mask)
    side = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    grow = round(float(MNIST_STROKE - ratio) * int(side))
    if grow < 1:
        return mask
    return cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow | 1, grow | 1)))


def dark_ink(gray: np.ndarray) -> bool:
    """Whether the writing is darker than what it is written on: more pixels stand out below their
    neighbourhood's median than above it. (The page's own brightness cannot tell: paper in a dim room
    is darker than a lit blackboard. A mean would not do either: the ink lowers it, and the paper
    around every stroke then stands out above it.) Judged on the page reduced to 200 px: cheap, and
    still a stroke where one is written."""
    f = 200 / max(gray.shape)
    size = (max(1, round(gray.shape[1] * f)), max(1, round(gray.shape[0] * f)))  # a 1 x 4000 strip stays 1 px high
    small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    off = small.astype(np.int16) - cv2.medianBlur(small, 13).astype(np.int16)  # 13 px: wider than any stroke
    noise = 1.4826 * float(np.median(np.abs(off)))  # the paper's grain and the sensor's, robustly
    level = max(6.0, 4 * noise)
    return int((off < -level).sum()) >= int((off > level).sum())


def marks_of_page(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """uint8 page (any polarity) -> (uint8 mask of what is written, 1 = ink; the page's pixels per
    mask pixel: a page larger than PHOTO_SIDE is read reduced)."""
    scale = 1.0
    if max(gray.shape) > PHOTO_SIDE:
        scale = PHOTO_SIDE / max(gray.shape)
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    if not dark_ink(gray):  # light writing on a dark surface (chalk, a screen): paper bright first
        gray = 255 - gray
    return keep_marks(remove_rules(binarise(flatten_light(gray)))), 1 / scale


def finish(marks: np.ndarray) -> np.ndarray:
    """The marks of one digit (uint8 mask) -> float32 ink in [0, 1] with MNIST's stroke proportions
    and soft edges, as a pen's and MNIST's have."""
    if not marks.any():
        return np.zeros(marks.shape, np.float32)
    return cv2.GaussianBlur(thicken(marks).astype(np.float32), (0, 0), 0.7)


def ink_of_page(gray: np.ndarray) -> np.ndarray:
    """uint8 page (any polarity) holding one digit -> float32 ink in [0, 1], bright on black; all zero
    when nothing written is left (blank paper, rules alone); TooManyMarks for a page of writing."""
    marks, _ = marks_of_page(gray)
    # A ballpoint that skips, or a stroke cut where it crosses the paper's lines, leaves crumbs beside
    # a digit; a page of writing holds many marks of a size, and counting only the sizeable ones tells
    # them apart (photos of training digits: at most 6; pages of text: 22 at least).
    areas = cv2.connectedComponentsWithStats(marks)[2][1:, cv2.CC_STAT_AREA]
    count = int((areas >= MARK_SHARE * areas.max()).sum()) if len(areas) else 0
    if count > MAX_MARKS:
        raise TooManyMarks(count)
    return finish(marks)

"""From an image file to the network's input: a 28x28 array made the way MNIST was made.

MNIST digits are bright ink on black, cropped to their ink, scaled so the longer side is 20 px with
anti-aliasing, and placed in a 28x28 frame with their centre of mass at the centre. A digit drawn on
a canvas, scanned or photographed gets the same treatment here; resizing a whole 280x280 canvas to
28x28 instead gives the network inputs unlike anything it was trained on (tests/test_canvas_set.py
measures how much that costs).

Used by the web server and by `digits predict`, so both see exactly the same input. This recipe is
`model.spec.NORMALISATION`; a change to what it produces needs a new name there.
"""

from __future__ import annotations

import functools
import io
import math
import struct
import warnings
import zlib

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from model import photos
from model.spec import SIDE

SUPPORTED_FORMATS = {"PNG", "JPEG", "MPO", "WEBP", "BMP", "GIF"}  # MPO: a camera's multi-picture JPEG
DEFAULT_MAX_PIXELS = 16_000_000  # 4000 x 4000
WORKING_SIDE = 1024  # larger images are reduced to this before any per-pixel work
MAX_JPEG_SCANS = 100  # a progressive JPEG has about 10; each scan costs a pass over every coefficient
WORKING_MODES = {"L", "LA", "RGB", "RGBA"}  # what the ink finder reads (and Pillow's reduce() takes)

# At most this many pixels a side, an image is a bitmap (MNIST's 28, USPS's 16, optdigits' 8 or 32, a
# thumbnail), never a photo of paper: too few pixels to hold paper, light and a pen, and the photo
# check misjudged it (a 16 px digit fills its frame, so few pixels sit at the background's level).
BITMAP_SIDE = 48
BLOCKY_SIDE = 256  # up to this size, an image enlarged in blocks (nearest neighbour) is read at its own size
BOX = 20  # the longer side of the digit inside the 28x28 frame
INK_THRESHOLD = 0.1  # of the strongest ink: below this, a pixel is background noise
MIN_INK = 40 / 255  # an image whose strongest ink is fainter than this is blank
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LUMA_RGBA = np.array([0.299, 0.587, 0.114, 0], np.float32) / 255  # ITU-R 601 of 8-bit RGBA, alpha left out


class ImageError(ValueError):
    """An image that cannot be turned into a digit. `kind` says why, for the HTTP status."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "undecodable", "unsupported", "too_large", "too_costly", "blank", "not_one_digit",
        # "not_a_number"


def open_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read the header only, and refuse what would be too large or too costly to decode."""
    if not data:
        raise ImageError("undecodable", "empty image data")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise ImageError("undecodable", "not a recognised image (expected PNG, JPEG, WebP, BMP or GIF)") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError("too_large", f"image has more than {max_pixels} pixels") from None
        except Exception as e:  # Pillow raises many types for malformed headers
            raise ImageError("undecodable", f"cannot read image header ({e})") from None
    if img.format not in SUPPORTED_FORMATS:
        raise ImageError("unsupported", f"unsupported image format {img.format}; use PNG, JPEG, WebP, BMP or GIF")
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError("too_large", f"image is {w}x{h} = {w * h} pixels, over the limit of {max_pixels}")
    if w < 1 or h < 1:
        raise ImageError("undecodable", "image has no pixels")
    if _scans(img, data) > MAX_JPEG_SCANS:
        raise ImageError("too_costly", f"JPEG has more than {MAX_JPEG_SCANS} scans; a photo or drawing has about 10")
    return img


def _scans(img: Image.Image, data: bytes) -> int:
    # Inside entropy-coded data a 0xFF byte is stuffed (FF 00), so FF DA marks a scan and nothing else.
    return data.count(b"\xff\xda") if img.format in ("JPEG", "MPO") else 1


def decode_cost(img: Image.Image, data: bytes) -> int:
    """Roughly what decoding an opened image costs, in pixels of a PNG: a JPEG scan over a pixel costs
    about a sixteenth of that (measured: 90 scans of 4000x4000 in 0.88 s, a 16-bit PNG as large in 0.21 s)."""
    pixels = img.width * img.height
    return pixels * _scans(img, data) // 16 if img.format in ("JPEG", "MPO") else pixels


def _working_mode(img: Image.Image) -> Image.Image:
    """Palette, 1-bit, 16-bit and CMYK images in a mode the ink finder reads, without losing contrast."""
    if img.mode in WORKING_MODES:
        return img
    if img.mode.startswith("I"):  # 16-bit greyscale (I;16, I;16B) or I: scale 0..65535 to 0..255, not clip
        a = np.asarray(img.convert("I") if img.mode != "I" else img, dtype=np.int64)
        return Image.fromarray(np.clip(a // 257, 0, 255).astype(np.uint8), mode="L")
    has_alpha = img.mode in ("PA", "La") or "transparency" in img.info
    return img.convert("RGBA" if has_alpha else "L" if img.mode in ("1", "F") else "RGB")


def _unblocked(img: Image.Image) -> Image.Image:
    """A small bitmap enlarged by nearest neighbour (every k x k block one colour: an 8x8 digit shown as
    32x32) at its own size: the blocks' edges, smoothed by the resize to 20 px, read as strokes."""
    if has_alpha(img) or max(img.size) > BLOCKY_SIDE or min(img.size) < 2:
        return img  # the page's drawings (alpha) and anything large are never enlarged bitmaps
    a = np.asarray(img)
    h, w = a.shape[:2]
    # Where each row (column) repeats the one before: one pass each, then every block size is a test
    # on these two short vectors.
    same_rows = (a[1:] == a[:-1]).reshape(h - 1, -1).all(axis=1)
    same_cols = (a[:, 1:] == a[:, :-1]).swapaxes(0, 1).reshape(w - 1, -1).all(axis=1)
    for k in range(min(16, math.gcd(h, w)), 1, -1):
        inner_rows, inner_cols = np.arange(1, h) % k != 0, np.arange(1, w) % k != 0
        if h % k == 0 and w % k == 0 and same_rows[inner_rows].all() and same_cols[inner_cols].all():
            return Image.fromarray(np.ascontiguousarray(a[::k, ::k]), mode=img.mode)
    return img


def load(img: Image.Image) -> Image.Image:
    """Decode an opened image into a working mode, reduced to at most WORKING_SIDE pixels a side."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)  # an animation (GIF, APNG, WebP) or an MPO: its first frame
            if img.format in ("JPEG", "MPO"):
                img.draft(img.mode, (WORKING_SIDE, WORKING_SIDE))  # decode at 1/2, 1/4 or 1/8 scale: cheap
            img.load()
            ImageOps.exif_transpose(img, in_place=True)  # photos: honour the camera's orientation
            img = _unblocked(_working_mode(img))
            if max(img.size) > WORKING_SIDE:
                # The digit ends up 20 px tall: a photo's 12 megapixels only cost time. Box-averaged.
                img = img.reduce(math.ceil(max(img.size) / WORKING_SIDE))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError("too_large", "image has more pixels than its header said") from None
        except Exception as e:
            raise ImageError("undecodable", f"cannot decode image ({e})") from None
    return img


def ink_image(img: Image.Image) -> tuple[np.ndarray, tuple[int, int]]:
    """Float array in [0, 1] where 1 is ink, whatever the polarity or alpha, and where its top-left
    pixel is in the image (x, y): it may be cropped to the drawn area (only empty background is
    removed), which to_mnist does anyway.
    """
    if has_alpha(img):
        rgba = img if img.mode == "RGBA" else img.convert("RGBA")
        bbox = rgba.getchannel("A").getbbox()  # in C: where anything at all was drawn
        if bbox is None:
            raise ImageError("blank", "no ink found: the image is blank")
        whole = bbox == (0, 0, *img.size)
        a = np.asarray(rgba if whole else rgba.crop(bbox))  # (h, w, 4) uint8, the drawn area
        alpha = a[..., 3] * np.float32(1 / 255)
        if not whole or alpha.min() < 1:
            # A canvas from toDataURL() is transparent where nothing was drawn: its ink is wherever
            # alpha is. Composited onto a background that contrasts with the ink's own colour (so
            # black ink and white ink on transparency both count), then inverted if that background
            # is white: ink = alpha * (1 - gray) for dark ink, alpha * gray for light ink.
            # (h*w, 4) @ (4,) as one BLAS product: 5 us, where (h, w, 3) @ (3,) took 36 per page request.
            gray = (a.reshape(-1, 4) @ LUMA_RGBA).reshape(alpha.shape)
            opaque = (alpha > 0.5).ravel()
            drawn = np.count_nonzero(opaque)
            ink_is_dark = float(gray.ravel() @ opaque) < 0.5 * drawn if drawn else True  # mean luma of the drawn
            return (alpha * (1 - gray) if ink_is_dark else alpha * gray), bbox[:2]
    gray = np.asarray(img.convert("L"), dtype=np.float32) * (1 / 255)  # Pillow's ITU-R 601 luma, in C
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background_level = float(np.median(border))
    if background_level > 0.5:  # dark ink on a light background: turn it into light on dark
        gray = 1 - gray
        background_level = 1 - background_level
    # Paper is rarely pure white: what the border looks like is background, not faint ink.
    return np.clip(gray - background_level, 0, None), (0, 0)


def to_mnist(ink: np.ndarray) -> np.ndarray:
    """Crop to the ink, scale the longer side to 20 px, centre the mass in 28x28: (28, 28) in [0, 1]."""
    peak = float(ink.max())
    if peak < MIN_INK:
        raise ImageError("blank", "no ink found: the image is blank")
    strong = ink >= INK_THRESHOLD * peak
    rows = np.flatnonzero(strong.any(axis=1))
    cols = np.flatnonzero(strong.any(axis=0))
    crop = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    digit = ink[crop] * strong[crop]  # below the threshold: background noise, gone
    digit *= np.float32(1 / peak)
    h, w = digit.shape
    scale = BOX / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    # Pillow's Lanczos as two matrix products (10 us where Image.resize and its copies took 90), columns
    # first as Pillow does: (h, w) @ (w, new_w) -> (h, new_w); (new_h, h) @ (h, new_w) -> (new_h, new_w)
    across = digit @ lanczos_weights(w, new_w).T
    small = (lanczos_weights(h, new_h) @ across).clip(0, 1)
    top_ink = small.max()
    if top_ink > 0:
        small = small / top_ink  # thin strokes lose contrast when shrunk; MNIST's cores are full ink
    out = np.zeros((SIDE, SIDE), np.float32)
    # The centre of mass from the row and column sums: 3 us, where np.indices over the image took 10.
    by_row, by_col = small.sum(axis=1), small.sum(axis=0)
    total = by_row.sum()
    cy, cx = (np.arange(new_h) @ by_row) / total, (np.arange(new_w) @ by_col) / total
    top = min(max(round(SIDE / 2 - float(cy)), 0), SIDE - new_h)
    left = min(max(round(SIDE / 2 - float(cx)), 0), SIDE - new_w)
    out[top : top + new_h, left : left + new_w] = small
    return out


@functools.lru_cache(maxsize=256)
def lanczos_weights(size: int, new_size: int) -> np.ndarray:
    """(new_size, size) float32: Pillow's Lanczos (a = 3) resampling of one axis as a matrix, with its
    coefficients (Resample.c's precompute_coeffs): the filter widened by the reduction factor, so it
    anti-aliases, and each row normalised to sum to 1."""
    scale = size / new_size
    filterscale = max(scale, 1.0)
    support = 3.0 * filterscale
    weights = np.zeros((new_size, size))
    for i in range(new_size):
        centre = (i + 0.5) * scale
        lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), size)
        x = (np.arange(lo, hi) - centre + 0.5) / filterscale
        k = np.where(np.abs(x) < 3, np.sinc(x) * np.sinc(x / 3), 0.0)  # np.sinc is sin(pi x) / (pi x)
        total = k.sum()
        weights[i, lo:hi] = k / total if total != 0 else k
    weights = weights.astype(np.float32)  # the image is float32: float64 weights made it a float64 copy
    weights.flags.writeable = False  # shared by every caller through the cache
    return weights


def normalise_bytes(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Image file bytes -> (28, 28) float32 in [0, 1], ink bright: what the network reads."""
    return read(open_image(data, max_pixels))[0]


def read_bytes(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, bool]:
    """Image file bytes -> (what the network reads, whether it was read as a photo of paper)."""
    return read(open_image(data, max_pixels))


def read(img: Image.Image) -> tuple[np.ndarray, bool]:
    """An opened image -> ((28, 28) float32 in [0, 1], ink bright; True if it was a photo or scan of
    paper, cleaned first by model.photos). A drawing or an MNIST-style image is read as it is."""
    img = load(img)
    if not has_alpha(img) and max(img.size) > BITMAP_SIDE:
        gray = np.asarray(img.convert("L"))
        if not photos.is_clean(gray):
            try:
                return to_mnist(photos.ink_of_page(gray)), True
            except photos.TooManyMarks as e:
                raise ImageError("not_one_digit", str(e)) from None
    return to_mnist(ink_image(img)[0]), False


def kept_copy(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[bytes, str]:
    """What a server keeps of an image it was sent: its pixels as read (turned upright, at most
    WORKING_SIDE a side), re-encoded with nothing else, and the media type. Metadata and any chunk a
    sender added (a PNG can carry megabytes of them) are gone; a JPEG stays a JPEG (quality 90)."""
    img = open_image(data, max_pixels)
    jpeg = img.format in ("JPEG", "MPO")
    img = load(img)
    if jpeg and img.mode not in ("L", "RGB"):
        jpeg = False
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90) if jpeg else img.save(buf, "PNG")
    return buf.getvalue(), "image/jpeg" if jpeg else "image/png"


def has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)


def to_png(pixels: np.ndarray) -> bytes:
    """A (28, 28) array in [0, 1] as an 8-bit grayscale PNG (what the model saw).

    Written here rather than by Pillow: for 28x28 its save() costs 45 us of Python around 10 of zlib,
    in every answer with `return_input`. The whole format for one grey image is these three chunks,
    each row led by its filter byte (0, none), the rows deflated at zlib's fastest level."""
    rows = np.zeros((pixels.shape[0], pixels.shape[1] + 1), np.uint8)
    rows[:, 1:] = np.round(np.clip(pixels, 0, 1) * 255)
    header = struct.pack(">IIBBBBB", pixels.shape[1], pixels.shape[0], 8, 0, 0, 0, 0)  # 8-bit grey, no interlace
    image = zlib.compress(rows.tobytes(), 1)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", image) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

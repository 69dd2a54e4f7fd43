"""Inputs an attacker (or an odd camera) sends: made here, small on the wire, costly if handled naively."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageDraw


def save(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def seven(side: int, ink: int = 0, background: int = 255) -> Image.Image:
    """A 7 drawn in grey level `ink` on `background`, in mode L."""
    img = Image.new("L", (side, side), background)
    ImageDraw.Draw(img).line(
        [(side * 0.25, side * 0.2), (side * 0.75, side * 0.2), (side * 0.45, side * 0.85)], fill=ink, width=side // 12
    )
    return img


def sixteen_bit(img: Image.Image) -> Image.Image:
    """The same picture with 16 bits a pixel (a PNG in mode I;16)."""
    return Image.fromarray(np.asarray(img, dtype=np.uint16) * 257)


def progressive_jpeg_with_repeated_scans(repeats: int = 1000, side: int = 4000) -> bytes:
    """A side x side progressive JPEG whose last scan repeats: every repeat costs a pass over all
    coefficients when decoded, and adds a hundred bytes or so to the file."""
    jpeg = save(Image.new("RGB", (side, side), "white"), "JPEG", progressive=True, quality=90)
    last_scan = jpeg.rfind(b"\xff\xda")
    return jpeg[:-2] + jpeg[last_scan:-2] * repeats + b"\xff\xd9"


def blank_16bit_rgba_png(side: int = 4000) -> bytes:
    """About 124 KB on the wire, 16 million pixels of 8 bytes when decoded (Pillow cannot write these)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 16, 6, 0, 0, 0)  # 16 bits, RGBA
    rows = zlib.compress(bytes(side * (1 + side * 8)), 9)  # each row: filter byte 0, then zeros
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def strip_png(length: int = 16_000_000) -> bytes:
    """A 1 x length strip: within the pixel limit, about 30 KB compressed."""
    return save(Image.new("L", (length, 1), 255), "PNG")

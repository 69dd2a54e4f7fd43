"""Request bodies to network inputs, with the HTTP status that each kind of bad input deserves."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

import numpy as np
from fastapi import Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from app.api.schemas import PredictBatchJSON, PredictImage, PredictPixels
from model.images import ImageError
from model.spec import N_PIXELS, SIDE, from_pixels

MULTIPART, JSON = "multipart/form-data", "application/json"
IMAGE_MEDIA_TYPES = {"image/png", "image/jpeg", "image/webp", "image/bmp", "image/gif", "image/x-ms-bmp"}
_STATUS = {
    "undecodable": 400,
    "unsupported": 415,
    "too_large": 413,
    "too_costly": 422,
    "blank": 422,
    "not_one_digit": 422,
    "not_a_number": 422,
}
_DATA_URL = re.compile(r"^data:([\w/+.-]*)(;[^,]*)?,", re.ASCII)


class InputError(Exception):
    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(str(detail))
        self.status = status
        self.detail = detail


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def unsupported_media(media: str, accepted: str) -> InputError:
    return InputError(415, f"unsupported content type {media or '(none)'!r}: send {accepted}")


def image_error(e: ImageError) -> InputError:
    return InputError(_STATUS[e.kind], str(e))


def decode_base64_image(text: str) -> bytes:
    """A data URL or bare base64 -> bytes. Refuses a data URL that is not an image or not base64."""
    text = text.strip()
    m = _DATA_URL.match(text)
    if m:
        mime, params = m.group(1).lower(), (m.group(2) or "")
        if mime and not mime.startswith("image/"):
            raise InputError(415, f"data URL has media type {mime!r}; send an image (PNG, JPEG, WebP, BMP, GIF)")
        if ";base64" not in params:
            raise InputError(400, "data URL must be base64-encoded (data:image/png;base64,...)")
        text = text[m.end() :]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(400, "image is not valid base64") from None


def pixels_input(p: PredictPixels) -> np.ndarray:
    """MNIST-format pixels -> (28, 28) float32 in [0, 1]; refuses NaN, inf, wrong shape, out of range, blank."""
    shape = f"pixels must be {SIDE}x{SIDE} nested lists or {N_PIXELS} values"
    try:
        a = np.asarray(p.pixels, dtype=np.float64)
    except ValueError:  # rows of different lengths
        raise InputError(422, f"{shape}; rows have different lengths") from None
    if a.shape not in ((SIDE, SIDE), (N_PIXELS,)):
        raise InputError(422, f"{shape}, got shape {list(a.shape)}")
    if not np.isfinite(a).all():
        raise InputError(422, "pixels must be finite numbers (found NaN or infinity)")
    lo, hi = float(a.min()), float(a.max())
    scale = p.scale if p.scale != "auto" else ("unit" if hi <= 1 else "byte")
    top = 1.0 if scale == "unit" else 255.0
    if lo < 0 or hi > top:
        raise InputError(422, f"pixel values must be within 0..{top:g} for scale {scale!r}, got {lo:g}..{hi:g}")
    if hi == 0:
        raise InputError(422, "no ink found: every pixel is 0")
    return from_pixels(a, max_value=top).reshape(SIDE, SIDE)


# A JSON body holds an image (base64 has no commas or brackets) or at most 784 pixels in 29 brackets:
# anything with far more is refused before it is parsed, which would cost seconds and hundreds of MB.
MAX_JSON_COMMAS, MAX_JSON_BRACKETS = 4 * N_PIXELS, 4 * SIDE


def parse_json(body: bytes) -> Any:
    """The body as JSON, or a 400/422 that says what is wrong with it."""
    if body.count(b",") > MAX_JSON_COMMAS or body.count(b"[") > MAX_JSON_BRACKETS:
        raise InputError(422, f"too many values: pixels holds at most {N_PIXELS} numbers in {SIDE} rows")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(400, f"body is not valid JSON: {e}") from None
    except (ValueError, RecursionError) as e:  # a number of thousands of digits; nesting past the stack
        raise InputError(422, f"body is not JSON this API accepts: {str(e)[:200]}") from None


def json_input(body: bytes) -> np.ndarray | bytes:
    """{"pixels": ...} -> (28, 28) network input; {"image": ...} -> the image file's bytes."""
    raw = parse_json(body)
    if not isinstance(raw, dict) or ("image" in raw) == ("pixels" in raw):
        raise InputError(422, 'send a JSON object with exactly one of "image" (data URL or base64) or "pixels"')
    try:
        if "pixels" in raw:
            return pixels_input(PredictPixels.model_validate(raw))
        req = PredictImage.model_validate(raw)
    except ValidationError as e:
        raise InputError(422, validation_message(e)) from None
    return decode_base64_image(req.image)


def validation_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:5]:
        where = ".".join(str(x) for x in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


async def _uploads(request: Request, field: str, limit: int, max_fields: int) -> list[bytes | InputError]:
    """The entries of a multipart body's `field`: each file's bytes, or an error for a non-file entry.

    More than `limit` files is a 422; Starlette refuses a body with more than one file past the limit
    (400) before buffering it.
    """
    async with request.form(max_files=limit + 1, max_fields=max_fields) as form:
        entries = form.getlist(field)
        if len(entries) > limit:
            raise InputError(422, f"at most {limit} images per request in the field '{field}', got more")
        return [await e.read() if isinstance(e, UploadFile) else InputError(422, "not a file") for e in entries]


async def single_input(request: Request) -> bytes | np.ndarray:
    """The image file's bytes, or pixels already made into the network's input."""
    media = media_type(request.headers.get("content-type"))
    if media == MULTIPART:
        files = await _uploads(request, "file", limit=1, max_fields=4)
        if not files or isinstance(files[0], InputError):
            raise InputError(422, "multipart body needs an image file in the field 'file'")
        return files[0]
    if media == JSON:
        return json_input(await request.body())
    if media in IMAGE_MEDIA_TYPES:
        return await request.body()
    raise unsupported_media(
        media, "multipart/form-data with field 'file', application/json with 'image' or 'pixels', or a raw image/* body"
    )


async def batch_payloads(request: Request, limit: int) -> list[bytes | InputError]:
    media = media_type(request.headers.get("content-type"))
    if media == MULTIPART:
        payloads = await _uploads(request, "files", limit=limit, max_fields=limit + 1)
    elif media == JSON:
        body = PredictBatchJSON.model_validate(parse_json(await request.body()))
        if len(body.images) > limit:
            raise InputError(422, f"at most {limit} images per batch, got {len(body.images)}")
        payloads = []
        for text in body.images:
            try:
                payloads.append(decode_base64_image(text))
            except InputError as e:
                payloads.append(e)
    else:
        raise unsupported_media(media, "multipart 'files' or JSON 'images'")
    if not payloads:
        raise InputError(422, "no images: send multipart 'files' or JSON 'images'")
    return payloads

"""POST /feedback: a person says what digit a drawing really is (public, rate-limited)."""

from __future__ import annotations

import base64
import hashlib

import numpy as np
from fastapi import APIRouter, HTTPException, Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from app.api.deps import loaded_model, services
from app.api.inputs import (
    JSON,
    MULTIPART,
    InputError,
    decode_base64_image,
    image_error,
    media_type,
    parse_json,
    unsupported_media,
    validation_message,
)
from app.api.predict_docs import ERRORS
from app.api.schemas import FeedbackReceipt, FeedbackRequest
from app.infra.db import Busy
from app.services.feedback_store import ClientQuotaFull, Correction, FeedbackStore, Stored, StoreFull
from app.services.image_work import ImageWork
from model.images import ImageError, kept_copy, to_png

router = APIRouter(tags=["feedback"])


async def _correction_request(request: Request) -> tuple[bytes, FeedbackRequest]:
    """The image's bytes and the rest of the request, from JSON (`image` as a data URL or base64) or
    multipart (`file`, and `label`, `model_version`, `predicted` as fields)."""
    media = media_type(request.headers.get("content-type"))
    try:
        if media == JSON:
            # Strict, as the rest of the API: `true`, "7" and 7.0 are not the digit 7 (a form's fields are
            # text by nature, so multipart stays lax).
            body = FeedbackRequest.model_validate(parse_json(await request.body()), strict=True)
            if not body.image:
                raise InputError(422, "send the image that was classified in 'image' (a data URL or base64)")
            return decode_base64_image(body.image), body
        if media == MULTIPART:
            async with request.form(max_files=1, max_fields=8) as form:
                upload = form.get("file")
                if not isinstance(upload, UploadFile):
                    raise InputError(422, "multipart body needs the image in the field 'file'")
                fields = {k: v for k, v in form.items() if k in ("label", "model_version", "predicted")}
                return await upload.read(), FeedbackRequest.model_validate(fields)
    except ValidationError as e:
        raise InputError(422, validation_message(e)) from None
    raise unsupported_media(media, "application/json with 'image' and 'label', or multipart with 'file' and 'label'")


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _correction(
    data: bytes, body: FeedbackRequest, x: np.ndarray, probs: np.ndarray, version: str, max_pixels: int
) -> Correction:
    kept, media_type = kept_copy(data, max_pixels)
    return Correction(
        label=body.label,
        sha256=hashlib.sha256(data).hexdigest(),
        original=kept,  # the pixels, not the bytes: a sender's added chunks would fill the store
        media_type=media_type,
        input_png=to_png(x),
        model_version=version,
        predicted=int(np.argmax(probs)),
        probabilities=[round(float(p), 6) for p in probs],
        claimed_version=body.model_version,
        claimed_digit=body.predicted,
    )


def _made_and_stored(store: FeedbackStore, address: str, made: tuple) -> tuple[Correction, Stored]:
    correction = _correction(*made)
    return correction, store.add(correction, address)


async def _keep(work: ImageWork, store: FeedbackStore, address: str, made: tuple) -> tuple[Correction, Stored]:
    """The correction made from `made` (see _correction) and stored.

    A canvas-sized image on SQLite, at once on the event loop (about 2 ms with the write) unless another
    writer holds the lock: at 256 connections a trip off the loop waited for the loop's turn and for
    the GIL, p50 25 ms and p99 over 100 for 3 ms of work. Anything else in one trip to the pool."""
    if not store.db.is_postgres and work.is_cheap(made[0]):
        correction = _correction(*made)
        try:
            return correction, store.add(correction, address, wait=False)
        except Busy:
            return correction, await work.in_pool(lambda: store.add(correction, address))
    return await work.in_pool(lambda: _made_and_stored(store, address, made))


@router.post(
    "/feedback",
    status_code=201,
    response_model=FeedbackReceipt,
    responses={**ERRORS, 429: {"description": "too many corrections from this client; see Retry-After"}},
    summary="Correct an answer: the digit a drawing really is",
)
async def send_feedback(request: Request) -> FeedbackReceipt:
    """The exact image that was classified and the digit it really is (and, optionally, the model version
    and the answer the page showed). The server reads the image again and keeps it, with its own answer,
    for an admin to review; a correction never trains a model before an admin accepts it. The same
    image sent twice is kept once; the receipt never says how a kept image was reviewed. Limited per
    client (`DIGITS_FEEDBACK_RATE`): 429 with Retry-After."""
    address = _client_address(request)
    wait = services(request).feedback_limiter.retry_after(address)
    if wait is not None:
        raise HTTPException(429, f"too many corrections; try again in {wait} s", headers={"Retry-After": str(wait)})
    data, body = await _correction_request(request)
    model, work = loaded_model(request), services(request).image_work
    try:
        x, photo = await work.normalise(data, work.budget())
    except ImageError as e:
        raise image_error(e) from None
    answer = model.predictor.answer(x.reshape(1, -1), photo=np.array([photo]))
    probs: np.ndarray = answer.probabilities[0]
    store: FeedbackStore = services(request).feedback
    try:
        kept, stored = await _keep(work, store, address, (data, body, x, probs, model.version, work.max_pixels))
    except ImageError as e:
        raise image_error(e) from None
    except StoreFull as e:
        raise HTTPException(503, f"{e}; corrections are not being taken now") from None
    except ClientQuotaFull as e:
        raise HTTPException(429, f"{e}; try again once they have been reviewed") from None
    return FeedbackReceipt(
        id=stored.id, duplicate=stored.duplicate, model_version=model.version,
        predicted=kept.predicted, input_png=base64.b64encode(kept.input_png).decode(),
    )  # fmt: skip

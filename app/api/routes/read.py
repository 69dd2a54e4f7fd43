"""POST /read and /read/batch: the number written on an image, digit by digit, with boxes.

Same inputs and limits as /predict (a multipart file, JSON data URL or base64, JSON pixels, a raw
image body; a batch of images). The reading itself (model.numbers: segmenting, then every candidate
digit through the network in one batch) runs in the worker's image pool, off the event loop.
"""

from __future__ import annotations

import asyncio
import base64

import numpy as np
from fastapi import APIRouter, Request

from app.api.deps import loaded_model, services
from app.api.inputs import InputError, batch_payloads, image_error, single_input
from app.api.predict_docs import ERRORS, read_body
from app.api.routes.predict import ReturnInput, digit_answer
from app.api.schemas import (
    BatchItemError,
    Box,
    NumberReading,
    ReadBatchItem,
    ReadBatchResponse,
    ReadDigit,
    ReadMark,
)
from app.services.image_work import Budget, ImageWork
from app.services.registry import LoadedModel
from model.images import ImageError, to_png
from model.numbers import Classify, Reading

router = APIRouter(tags=["read"])
ANSWERS = {"response_model_exclude_none": True, "responses": ERRORS}


def _classify(request: Request, model: LoadedModel) -> Classify:
    below = services(request).settings.uncertain_below
    return lambda X, photo: model.predictor.answer(X, below, np.full(len(X), photo))


def _box(b: tuple[int, int, int, int]) -> Box:
    return Box(x=b[0], y=b[1], width=b[2], height=b[3])


def _answer(request: Request, reading: Reading, model: LoadedModel, return_input: bool) -> NumberReading:
    digits = [
        ReadDigit(
            **digit_answer(request, reading.answers, d.row),
            box=_box(d.box),
            input_png=base64.b64encode(to_png(d.pixels)).decode() if return_input else None,
        )
        for d in reading.digits
    ]
    unsure = reading.ambiguous or any(d.uncertain or d.not_a_digit for d in digits)
    return NumberReading(
        number="".join(str(d.digit) for d in digits if not d.not_a_digit),
        text=reading.text(),
        uncertain=unsure,
        count_uncertain=reading.ambiguous,
        digits=digits,
        marks=[ReadMark(kind=m.kind, box=_box(m.box)) for m in reading.marks],
        model_version=model.version,
    )


async def _read(work: ImageWork, budget: Budget, payload: bytes | np.ndarray, classify: Classify) -> Reading:
    try:
        if isinstance(payload, np.ndarray):
            return await work.read_number_of_ink(payload, classify)
        return await work.read_number(payload, budget, classify)
    except ImageError as e:
        raise image_error(e) from None


@router.post(
    "/read", response_model=NumberReading, openapi_extra=read_body("/read"), summary="Read a number", **ANSWERS
)
async def read(request: Request, return_input: ReturnInput = False) -> NumberReading:
    """One image of a number of 1 to 12 digits, sent as to /predict. Answers the digits left to right,
    each with its box in the image's own pixels, its probabilities and flags; short marks (a dash, a
    dot) are reported apart; `uncertain` is true when any digit is, or when the count of digits is
    in doubt. A blank image is 422, as is one with more than 12 digits or a page of writing."""
    model = loaded_model(request)
    work: ImageWork = services(request).image_work
    payload = await single_input(request)
    reading = await _read(work, work.budget(), payload, _classify(request, model))
    return _answer(request, reading, model, return_input)


@router.post(
    "/read/batch",
    response_model=ReadBatchResponse,
    openapi_extra=read_body("/read/batch", batch=True),
    summary="Read up to 256 numbers",
    **ANSWERS,
)
async def read_batch(request: Request, return_input: ReturnInput = False) -> ReadBatchResponse:
    """Images as multipart `files` or JSON `{"images": [...]}`, each read as /read would, answered in
    order; a bad item has `ok: false` and its own error, the others are read."""
    state = services(request)
    model, work = loaded_model(request), state.image_work
    payloads = await batch_payloads(request, state.settings.max_batch)
    budget, classify = work.budget(), _classify(request, model)

    async def one(i: int, payload: bytes | InputError) -> ReadBatchItem:
        if isinstance(payload, InputError):
            return ReadBatchItem(index=i, ok=False, error=BatchItemError(status=payload.status, detail=payload.detail))
        try:
            reading = await _read(work, budget, payload, classify)
        except InputError as e:
            return ReadBatchItem(index=i, ok=False, error=BatchItemError(status=e.status, detail=str(e.detail)))
        return ReadBatchItem(index=i, ok=True, result=_answer(request, reading, model, return_input))

    items = await asyncio.gather(*(one(i, p) for i, p in enumerate(payloads)))
    del payloads
    return ReadBatchResponse(
        model_version=model.version, count=len(items), failed=sum(not it.ok for it in items), items=list(items)
    )

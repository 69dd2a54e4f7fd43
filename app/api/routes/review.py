"""Reviewing corrections (admin): list with filters, accept, reject, relabel, delete, export."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from app.api.auth import admin_router
from app.api.deps import services
from app.api.schemas import FeedbackItem, FeedbackList, ReviewRequest, ReviewResult
from app.services.feedback_review import Filters, Review
from app.services.feedback_store import FeedbackStatus

router = admin_router("/feedback", "feedback")


def get_review(request: Request) -> Review:
    return Review(services(request).feedback)


ReviewDep = Annotated[Review, Depends(get_review)]


@router.get("", response_model=FeedbackList, summary="Corrections, suspicious ones first")
def list_feedback(
    review: ReviewDep,
    status: FeedbackStatus | None = None,
    label: Annotated[int | None, Query(ge=0, le=9)] = None,
    disagree: Annotated[bool | None, Query(description="the model's answer differs from the label")] = None,
    client: Annotated[str | None, Query(max_length=64, description="a client's hash, as listed")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> FeedbackList:
    total, items = review.list(Filters(status, label, disagree, client), limit, offset)
    return FeedbackList(
        total=total,
        items=[FeedbackItem(**{**it, "input_png": base64.b64encode(it["input_png"]).decode()}) for it in items],
    )


@router.post("/review", response_model=ReviewResult, summary="Accept, reject or relabel corrections, in bulk")
def review_feedback(body: ReviewRequest, review: ReviewDep) -> ReviewResult:
    if (body.action == "relabel") != (body.label is not None):
        raise HTTPException(422, "'label' goes with 'relabel', and only with it")
    return ReviewResult(changed=review.review(body.ids, body.action, body.label))


@router.delete("/{item_id}", response_model=ReviewResult, summary="Delete one correction")
def delete_one(item_id: str, review: ReviewDep) -> ReviewResult:
    changed = review.delete(item_id=item_id)
    if not changed:
        raise HTTPException(404, f"no correction {item_id!r}")
    return ReviewResult(changed=changed)


@router.delete("", response_model=ReviewResult, summary="Delete everything one client sent")
def delete_client(review: ReviewDep, client: Annotated[str, Query(min_length=1, max_length=64)]) -> ReviewResult:
    return ReviewResult(changed=review.delete(client=client))


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "an .npz file"}},
    summary="The accepted corrections as a dataset file (.npz)",
)
def export_feedback(review: ReviewDep) -> StreamingResponse:
    # Streamed as it is read: a queue of 50,000 accepted corrections is a 52 MB file, never held whole.
    return StreamingResponse(
        review.export_chunks(),
        media_type="application/octet-stream",
        headers={"Content-Disposition": 'attachment; filename="corrections.npz"'},
    )

"""Retraining (admin): POST /train, history, status, cancel, and progress as Server-Sent Events."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterable, AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from app.api.auth import admin_router
from app.api.deps import JobsDep, Services, ServicesDep, TrainingDep
from app.api.schemas import ErrorBody, TrainJob, TrainJobList, TrainRequest
from app.services.feedback_review import Review
from app.services.job_store import Job, JobConflict, JobStore
from app.services.registry import InvalidVersion, UnknownVersion
from model.config import PRESETS
from model.config import preset as make_preset
from model.weights import WeightsError

router = admin_router("/train", "training")
EVENT_POLL_S = 0.25
EVENT_ID = re.compile(r"[0-9]{1,9}", re.ASCII)  # the ids this server sends: progress sequence numbers


def _parent_of(start_from: str | None, services: Services) -> dict[str, Any]:
    """A fine-tune's parent version and its layers, checked now so that a job that cannot run is never
    queued: the version must exist, and there must be accepted corrections to learn from."""
    version = start_from or services.registry.active_version()
    if version is None:
        raise HTTPException(422, "no version is active to fine-tune; name one with start_from")
    try:
        card = services.registry.card(version)
    except (UnknownVersion, InvalidVersion):
        raise HTTPException(404, f"no model version {version!r} to fine-tune") from None
    except WeightsError as e:
        raise HTTPException(422, f"version {version!r} cannot be fine-tuned: {e}") from None
    if not Review(services.feedback).count("pool"):
        raise HTTPException(422, "no accepted corrections to fine-tune on: accept some in the review queue first")
    return {"parent": version, "layers": card.layers}


def _found(jobs: JobStore, job_id: str) -> Job:
    job = jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no training job {job_id!r}")
    return job


def found_job(job_id: str, jobs: JobsDep) -> Job:
    """As a dependency, so that a stream's 404 is answered before the stream starts."""
    return _found(jobs, job_id)


def resume_after(last_event_id: Annotated[str | None, Header()] = None) -> int:
    """The progress event a reconnecting client saw last; anything this server never sent counts as none."""
    return int(last_event_id) if last_event_id and EVENT_ID.fullmatch(last_event_id) else 0


@router.post(
    "",
    status_code=202,
    response_model=TrainJob,
    responses={
        409: {"model": ErrorBody, "description": "a job is already queued or running"},
        422: {"model": ErrorBody, "description": "settings out of bounds"},
    },
    summary="Start a training run in the background",
)
async def start_training(body: TrainRequest, jobs: JobsDep, training: TrainingDep, services: ServicesDep) -> TrainJob:
    """Runs in its own process (one BLAS thread, lower priority) so predictions stay fast. When it
    finishes, the new version is evaluated on MNIST's test set and the canvas-style drawings,
    registered, and activated if it beats the active model (or always, with `activate: "always"`).

    Preset `finetune` goes on training a version (`start_from`, the active one by default) on the
    accepted corrections for a few hundred steps: about a minute to a version that knows them."""
    settings = services.settings
    exclude = {"preset", "activate", "feedback", "feedback_weight", "start_from"}
    overrides = body.model_dump(exclude_none=True, exclude=exclude)
    fine_tune = PRESETS[body.preset].fine_tunes
    overrides["feedback_weight"] = body.feedback_weight if body.feedback == "include" or fine_tune else 0
    if body.start_from is not None and not fine_tune:
        raise HTTPException(422, "start_from is for preset 'finetune': other presets train from scratch")
    if fine_tune:
        overrides |= await asyncio.to_thread(_parent_of, body.start_from, services)
    try:
        config = make_preset(body.preset, **overrides)
    except ValueError as e:
        raise HTTPException(422, str(e)) from None
    need, limit = config.memory_estimate(), settings.max_train_memory_bytes
    if need > limit:
        raise HTTPException(
            422,
            f"training this would take about {need / 1e9:.1f} GB (the images, the parameters with their gradients "
            f"and optimizer state, one batch through every layer), more than the {limit / 1e9:.1f} GB a job may "
            "use: a smaller batch_size or fewer units",
        )
    try:
        job = jobs.create(body.preset, config.as_dict(), body.activate)
    except JobConflict as e:
        raise HTTPException(409, f"training job {e} is already queued or running; cancel it or wait") from None
    training.job_queued()
    return TrainJob.from_job(job)


@router.get("", response_model=TrainJobList, summary="Training history, newest first")
def list_jobs(jobs: JobsDep) -> TrainJobList:
    return TrainJobList(jobs=[TrainJob.from_job(j) for j in jobs.list()])


@router.get("/{job_id}", response_model=TrainJob, responses={404: {"model": ErrorBody}}, summary="One job")
def get_job(job_id: str, jobs: JobsDep) -> TrainJob:
    return TrainJob.from_job(_found(jobs, job_id))


@router.post(
    "/{job_id}/cancel",
    response_model=TrainJob,
    responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody, "description": "the job has finished"}},
    summary="Stop a job within one training step",
)
def cancel_job(job_id: str, jobs: JobsDep) -> TrainJob:
    job = _found(jobs, job_id)
    if not job.is_active:
        raise HTTPException(409, f"training job {job_id} has already {job.status}")
    jobs.request_cancel(job_id)
    return TrainJob.from_job(jobs.get(job_id))


async def _progress(jobs: JobStore, job_id: str, seq: int) -> AsyncIterator[ServerSentEvent]:
    for s, data in await asyncio.to_thread(jobs.progress_since, job_id, seq):
        yield ServerSentEvent(event="progress", id=str(s), data=data)


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    responses={404: {"model": ErrorBody}},
    summary="Progress as Server-Sent Events",
)
async def job_events(
    request: Request,
    jobs: JobsDep,
    job: Annotated[Job, Depends(found_job)],
    seq: Annotated[int, Depends(resume_after)],
) -> AsyncIterable[ServerSentEvent]:
    """`progress` events (epoch, step, loss, accuracies, samples/s, ETA) with the step count as id, so a
    reconnecting client resumes where it stopped; a `status` event at the start and when the job ends,
    after which the stream closes."""
    job_id = job.id
    yield ServerSentEvent(event="status", data=TrainJob.from_job(job).model_dump())
    while True:
        finished = not (await asyncio.to_thread(jobs.get, job_id)).is_active
        async for event in _progress(jobs, job_id, seq):  # after a final status, the last of them
            seq = int(event.id)
            yield event
        if finished:
            job = await asyncio.to_thread(jobs.get, job_id)
            yield ServerSentEvent(event="status", data=TrainJob.from_job(job).model_dump())
            return
        if await request.is_disconnected():
            return
        await asyncio.sleep(EVENT_POLL_S)

"""One training job, start to end: train, report progress, evaluate, register, maybe promote.

A training worker (app.services.training_worker) runs it after claiming the job from the queue; it
never touches the served model on failure, and a version is registered whole or not at all.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import resource
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from app.infra.db import DB_ERRORS, error_reason
from app.services.feedback_review import Review, labelled_checksum
from app.services.feedback_store import FeedbackStore
from app.services.holdout_scores import HoldoutScores
from app.services.job_store import Job, JobStatus, JobStore
from app.services.registry import JobLost, Registry
from model.config import TrainConfig
from model.data import Dataset
from model.experiment import Corrections, run_experiment
from model.predictor import Predictor
from model.spec import N_PIXELS
from model.train import Progress, TrainingCancelled

log = logging.getLogger("digits.trainer")
PROGRESS_EVERY_S = 0.25


class Interrupted(Exception):
    """The worker running this job was asked to stop (SIGTERM: its server or its host shutting down)."""


class _Progress:
    """Where the training loop's progress goes: the job's rows, throttled."""

    def __init__(self, store: JobStore, job_id: str) -> None:
        self.store, self.job_id = store, job_id
        self.seq = 0
        self.last_write = 0.0

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        # Throttled, except epoch ends (val_acc) and the last step, which the chart always needs.
        if p.val_acc is None and p.step < p.total_steps and now - self.last_write < PROGRESS_EVERY_S:
            return
        self.seq += 1
        self.last_write = now
        try:
            self.store.add_progress(self.job_id, self.seq, {**p.as_dict(), "seq": self.seq})
        except DB_ERRORS as e:  # this point is lost (streams resume by sequence number); training goes on
            log.warning("progress not recorded", extra={"job": self.job_id, "error": error_reason(e)})


def _corrections(feedback: FeedbackStore | None) -> Corrections | None:
    """The accepted corrections' training pool (never the holdout, never what is not accepted)."""
    if feedback is None:
        return None
    x, y, digests = Review(feedback).accepted("pool")
    return Corrections(Dataset(x.reshape(len(x), N_PIXELS), y), labelled_checksum(digests, y))


def _train_and_register(
    job: Job,
    store: JobStore,
    registry: Registry,
    data_dir: Path | None,
    feedback: FeedbackStore | None,
    should_stop: Callable[[], bool],
) -> tuple[str, Predictor]:
    config = TrainConfig(**job.config)
    corrections = _corrections(feedback) if config.feedback_weight else None
    parent = registry.load(config.parent).predictor if config.parent is not None else None
    trained = run_experiment(
        config,
        data_dir,
        corrections=corrections,
        parent=parent,
        on_progress=_Progress(store, job.id),
        should_stop=should_stop,
    )
    trained = dataclasses.replace(trained, card=trained.card.replace(preset=job.preset, job_id=job.id))
    version = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + job.id[:6]
    guard = functools.partial(store.is_running_on, job_id=job.id, worker=job.worker)
    registry.register(trained, version, guard=guard)  # atomic: whole file or nothing
    return version, trained


def _failure(job_id: str, e: BaseException) -> tuple[JobStatus, str]:
    """The final status and message for a job that raised e."""
    if isinstance(e, sa.exc.StatementError) and isinstance(e.orig, Interrupted):
        e = e.orig  # SIGTERM's Interrupted, raised while SQLAlchemy ran a statement, comes wrapped
    if isinstance(e, TrainingCancelled):
        return JobStatus.CANCELLED, "cancelled by an admin"
    if isinstance(e, Interrupted):
        return JobStatus.INTERRUPTED, str(e)
    if isinstance(e, JobLost):
        return JobStatus.FAILED, str(e)
    if isinstance(e, OSError):
        return JobStatus.FAILED, f"could not write the weights: {e}"
    if isinstance(e, MemoryError):
        cap = resource.getrlimit(resource.RLIMIT_DATA)[0]
        within = "" if cap == resource.RLIM_INFINITY else f" of {cap / 1024**3:.2f} GiB (DIGITS_TRAIN_MEMORY_CAP_BYTES)"
        return JobStatus.FAILED, f"out of memory: the training process reached its memory cap{within} ({e})"
    log.error("training failed", extra={"job": job_id, "trace": traceback.format_exc()})
    return JobStatus.FAILED, f"{type(e).__name__}: {e}"


def _holdout_judge(feedback: FeedbackStore | None, registry: Registry, version: str, trained: Predictor):
    """Score the new version on today's real-drawing holdout; a function that scores the active one
    beside it, for the promotion gate."""
    if feedback is None:
        return lambda active: None
    scores = HoldoutScores(feedback)
    holdout = scores.current()
    mine = scores.evaluate(version, trained, holdout)

    def judge(active: str) -> tuple[int, float, float] | None:
        if mine is None:
            return None
        theirs = scores.evaluate(active, registry.load(active).predictor, holdout)
        return mine["n"], mine["accuracy"], theirs["accuracy"]

    return judge


def run_job(
    job: Job,
    store: JobStore,
    registry: Registry,
    data_dir: Path | None,
    should_stop: Callable[[], bool],
    feedback: FeedbackStore | None = None,
) -> JobStatus:
    """Train, evaluate, register and maybe promote a job its worker has claimed; returns its final
    status. `should_stop()` is asked before each step: True cancels, an exception ends the job."""
    job_id = job.id
    try:
        version, trained = _train_and_register(job, store, registry, data_dir, feedback, should_stop)
        judge = _holdout_judge(feedback, registry, version, trained)
    except Exception as e:
        status, error = _failure(job_id, e)
        store.finish(job_id, status, error=error)
        return status
    decision = registry.promotion(trained.card, job.activate, judge)
    if decision.promote:
        registry.activate(version)
    training = trained.card.training
    result: dict[str, Any] = {
        "test_accuracy": trained.card.test_accuracy,
        "canvas_accuracy": trained.card.canvas.accuracy if trained.card.canvas else None,
        "val_accuracy": training.val_accuracy if training else None,
        "seconds": training.seconds if training else None,
        "compared_with": {"version": decision.compared_with, "test_accuracy": decision.compared_accuracy},
        "holdout": decision.holdout,
        "corrections": trained.card.corrections,
    }
    store.finish(job_id, JobStatus.SUCCEEDED, version=version, promoted=int(decision.promote), result=result)
    log.info("training job finished", extra={"job": job_id, "version": version, "promoted": decision.promote, **result})
    return JobStatus.SUCCEEDED

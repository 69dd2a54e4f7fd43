"""The training process: `python -m app.services.training_process --job ID ...`, started by the launcher.

It runs apart from the web workers, with one BLAS thread (the launcher sets it in this process's
environment, since OpenBLAS sizes its thread pool when it loads) and a lower CPU priority: on two
cores, a multi-threaded BLAS spin-waits on a partner thread that the web workers keep descheduling,
and both training and predictions collapse. It reports progress to the job database, stops within
one step when cancelled, evaluates, registers and promotes, and never touches the served model on
failure.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import logging
import os
import signal
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa

from app.infra.logs import setup_logging
from app.services.db import DB_ERRORS, error_reason, open_db
from app.services.db_registry import open_registry
from app.services.feedback_review import Review, checksum
from app.services.feedback_store import FeedbackStore
from app.services.holdout import HoldoutScores
from app.services.job_store import Job, JobStatus, JobStore
from app.services.registry import INITIAL_VERSION, JobLost, Registry
from model.config import TrainConfig
from model.data import Dataset
from model.experiment import Corrections, run_experiment
from model.predictor import Predictor
from model.spec import N_PIXELS
from model.train import Progress, TrainingCancelled

log = logging.getLogger("digits.trainer")
PROGRESS_EVERY_S = 0.25


class Interrupted(Exception):
    """The server that started this job went away (or asked it to stop while shutting down)."""


class _JobWatch:
    """What the training loop asks before each step, and where its progress goes. `stop`, when given,
    answers instead of the database (a worker's heartbeat thread keeps the answer)."""

    def __init__(self, store: JobStore, job_id: str, stop: Callable[[], bool] | None = None) -> None:
        self.store, self.job_id, self.stop = store, job_id, stop
        self.parent = os.getppid()
        self.seq = 0
        self.last_write = 0.0

    def should_stop(self) -> bool:
        if self.stop is not None:
            return self.stop()
        if os.getppid() != self.parent:
            raise Interrupted("the server that started this job exited")
        try:
            return self.store.cancel_requested(self.job_id)
        except DB_ERRORS:
            return False  # a database outage is no reason to throw the run away; asked again next step

    def on_progress(self, p: Progress) -> None:
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
    return Corrections(Dataset(x.reshape(len(x), N_PIXELS), y), checksum(digests, y))


def _train_and_register(
    job: Job,
    store: JobStore,
    registry: Registry,
    data_dir: Path | None,
    feedback: FeedbackStore | None,
    worker: Worker | None,
) -> tuple[str, Predictor]:
    watch = _JobWatch(store, job.id, worker.should_stop if worker else None)
    config = TrainConfig(**job.config)
    corrections = _corrections(feedback) if config.feedback_weight else None
    trained = run_experiment(
        config, data_dir, corrections=corrections, on_progress=watch.on_progress, should_stop=watch.should_stop
    )
    trained = dataclasses.replace(trained, card=trained.card.replace(preset=job.preset, job_id=job.id))
    version = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + job.id[:6]
    guard = functools.partial(store.is_running_on, job_id=job.id, worker=worker.name) if worker else None
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


class Worker(Protocol):
    """A training worker running a job it claimed (see app.services.training_worker)."""

    name: str

    def should_stop(self) -> bool: ...


def run_job(
    job_id: str,
    store: JobStore,
    registry: Registry,
    data_dir: Path | None,
    feedback: FeedbackStore | None = None,
    worker: Worker | None = None,
) -> JobStatus:
    """Train, evaluate, register and maybe promote one job. Returns its final status. A worker has
    claimed the job already (it is running); a process the web server started marks it so here."""
    job = store.get(job_id)
    if job is None:
        raise SystemExit(f"no job {job_id}")
    if worker is None and not store.mark_running(job_id, os.getpid()):
        return store.get(job_id).status  # cancelled before this process started
    try:
        version, trained = _train_and_register(job, store, registry, data_dir, feedback, worker)
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


def lower_priority() -> None:
    """Predictions first. SCHED_IDLE runs this process only on cycles nobody else wants, and the
    scheduler preempts it the moment a web worker wakes; nice 19 is the fallback elsewhere.

    This process leads a session of its own (so a Ctrl-C meant for the server's terminal does not hit
    it), and Linux's autogroup scheduling shares the CPU fairly between sessions before it looks at
    any process's priority: without lowering the session's own niceness too, this process would get
    as much CPU as the whole web server (measured: p99 of /predict x5.3 instead of x3 or less).
    """
    with contextlib.suppress(OSError):
        Path("/proc/self/autogroup").write_text("19")
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(19)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run one training job (started by the web server).")
    ap.add_argument("--job", required=True)
    ap.add_argument("--runtime-dir", type=Path, required=True)
    ap.add_argument("--data-dir", type=Path)
    ap.add_argument("--database-url", help="the shared database (unset: the runtime folder's SQLite file)")
    args = ap.parse_args(argv)
    setup_logging()
    lower_priority()

    def on_sigterm(signum, frame):  # the server is shutting down
        raise Interrupted("the server shut down while the job ran")

    signal.signal(signal.SIGTERM, on_sigterm)
    db = open_db(args.database_url or args.runtime_dir / "jobs.sqlite")
    store = JobStore(db)
    feedback = FeedbackStore(db, salt=b"", max_items=0)  # read here, never added to
    registry = open_registry(db, args.runtime_dir, None, INITIAL_VERSION)
    try:
        status = run_job(args.job, store, registry, args.data_dir, feedback)
    except Interrupted as e:  # raised outside the training loop's own handling
        store.finish(args.job, JobStatus.INTERRUPTED, error=str(e))
        status = JobStatus.INTERRUPTED
    return 0 if status in (JobStatus.SUCCEEDED, JobStatus.CANCELLED, JobStatus.INTERRUPTED) else 1


if __name__ == "__main__":
    raise SystemExit(main())

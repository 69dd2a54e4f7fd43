"""`digits worker`: a training process that claims queued jobs from the shared database and runs them.

Any number of them, on any host, next to any number of web replicas. Each claims the oldest queued
job in one statement (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so two never run the same job, and
trains it at the lowest CPU priority with one BLAS thread, as the web server's own training process
does. A heartbeat thread writes the job's row every `heartbeat_s` and brings back the admin's cancel
flag; if the row says the job is no longer this worker's (a replica gave up on it after
`worker_timeout_s` of silence), training stops and nothing is registered. A worker killed outright
simply stops heartbeating: the next replica or worker to look marks its job failed.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading

from app.infra.settings import Settings
from app.services.db import DB_ERRORS, error_reason, open_db
from app.services.db_registry import open_registry
from app.services.feedback_store import FeedbackStore
from app.services.job_store import Job, JobStatus, JobStore
from app.services.registry import JobLost
from app.services.training_launcher import WorkerQueue
from app.services.training_process import Interrupted, lower_priority, run_job

log = logging.getLogger("digits.worker")


class Heartbeat:
    """Says the worker is alive while it trains one job, and keeps what the row answers."""

    def __init__(self, store: JobStore, job: Job, name: str, interval_s: float) -> None:
        self.store, self.job_id, self.name, self.interval_s = store, job.id, name, interval_s
        self.cancel = threading.Event()
        self.lost = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"heartbeat-{job.id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()

    def _run(self) -> None:
        while not self.done.wait(self.interval_s):
            try:
                answer = self.store.heartbeat(self.job_id, self.name)
            except DB_ERRORS as e:
                log.warning(
                    "heartbeat failed; training on", extra={"job": self.job_id, "error": error_reason(e)}
                )
                continue  # a short outage: the job is given up on only after worker_timeout_s
            if answer is None:
                self.lost.set()
                return
            if answer:
                self.cancel.set()


class TrainingWorker:
    def __init__(self, settings: Settings, name: str | None = None) -> None:
        self.settings = settings
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.db = open_db(settings.database)
        self.store = JobStore(self.db)
        self.registry = open_registry(self.db, settings.runtime_dir, settings.weights_dir, settings.initial_version)
        self.feedback = FeedbackStore(self.db, salt=b"", max_items=0)  # read here, never added to
        self.queue = WorkerQueue(self.store, settings)  # its recover() gives up on silent workers' jobs
        self.stopping = threading.Event()
        self._beat: Heartbeat | None = None

    # what run_job asks of a worker (app.services.training_process.Worker)
    def should_stop(self) -> bool:
        beat = self._beat
        if beat is not None and beat.lost.is_set():
            raise JobLost(
                f"the job was given up on: worker {self.name} was silent for {self.settings.worker_timeout_s:g} s"
            )
        if self.stopping.is_set():
            raise Interrupted(f"worker {self.name} was asked to stop")
        return beat is not None and beat.cancel.is_set()

    def run_once(self) -> str | None:
        """Give up on silent workers' jobs, claim one job and run it; its id, or None if none was queued."""
        self.db.migrated or self.db.upgrade()
        self.queue.recover()
        job = self.store.claim(self.name, os.getpid())
        if job is None:
            return None
        log.info("claimed training job", extra={"job": job.id, "worker": self.name, "preset": job.preset})
        with Heartbeat(self.store, job, self.name, self.settings.heartbeat_s) as beat:
            self._beat = beat
            try:
                status = run_job(job.id, self.store, self.registry, self.settings.data_dir, self.feedback, worker=self)
            except Interrupted as e:
                self.store.finish(job.id, JobStatus.INTERRUPTED, error=str(e))
                status = JobStatus.INTERRUPTED
            finally:
                self._beat = None
        log.info("training job done", extra={"job": job.id, "status": str(status)})
        return job.id

    def run_forever(self) -> None:
        unreachable = False
        while not self.stopping.is_set():
            try:
                ran = self.run_once()
            except DB_ERRORS as e:
                if not unreachable:
                    log.error("database unreachable; retrying", extra={"error": error_reason(e)})
                unreachable, ran = True, None
            else:
                if unreachable:
                    log.info("database reachable again")
                unreachable = False
            if ran is None:
                self.stopping.wait(self.settings.worker_poll_s)


def main(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT; a job running then is marked interrupted."""
    lower_priority()
    worker = TrainingWorker(settings)

    def on_signal(signum, frame):
        worker.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "training worker started", extra={"worker": worker.name, "database": worker.db.engine.url.render_as_string()}
    )
    worker.run_forever()
    return 0

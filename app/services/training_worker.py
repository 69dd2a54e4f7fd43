"""A training worker: the one way a job is trained. It claims queued jobs from the database and runs them.

`digits worker` runs one for good, on any host, next to any number of web replicas; on one host the
web server starts one itself when a job is queued (`python -m app.services.training_worker
--until-idle`, see app.services.training_queue), which exits when the queue is empty. Each claims
the oldest queued job in one statement (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so two never run
the same job, and trains it with one BLAS thread at the lowest CPU priority: on two cores a
multi-threaded BLAS spin-waits on a partner thread that the web processes keep descheduling, and both
training and predictions collapse. A heartbeat thread writes the job's row every `heartbeat_s` and
brings back the admin's cancel flag; if the row says the job is no longer this worker's (it was
given up on after `worker_timeout_s` of silence), training stops and nothing is registered. A worker
killed outright simply stops heartbeating: the next process to look gives its job up.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import resource
import signal
import threading
import time
from pathlib import Path

from app.infra.blas import use_one_blas_thread
from app.infra.db import DB_ERRORS, error_reason, open_db
from app.infra.logs import setup_logging
from app.infra.settings import Settings
from app.services.feedback_store import FeedbackStore
from app.services.job_store import Job, JobStatus, JobStore, worker_name
from app.services.registry import JobLost, Registry
from app.services.training_job import Interrupted, run_job

log = logging.getLogger("digits.worker")
MODULE = "app.services.training_worker"  # what this process's command line holds (python -m ...)


class Heartbeat:
    """Says the worker is alive while it trains one job, and keeps what the row answers.

    A cancel is honoured between two steps. A step can be long (a full batch of a wide network takes
    minutes), so if the job is still going `cancel_grace_s` after the admin's cancel, the heartbeat
    ends it from here: the job is marked cancelled and the process exits at once. Nothing is lost by
    it: a version is registered whole in one transaction or not at all. A `digits worker` that exits
    so is started again by its supervisor (Compose: `restart: unless-stopped`)."""

    def __init__(self, store: JobStore, job: Job, name: str, interval_s: float, cancel_grace_s: float = 10) -> None:
        self.store, self.job_id, self.name, self.interval_s = store, job.id, name, interval_s
        self.cancel_grace_s = cancel_grace_s
        self.cancelled_at: float | None = None
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
                log.warning("heartbeat failed; training on", extra={"job": self.job_id, "error": error_reason(e)})
                continue  # a short outage: the job is given up on only after worker_timeout_s
            if answer is None:
                self.lost.set()
                return
            if answer:
                self.cancel.set()
                self.cancelled_at = self.cancelled_at or time.monotonic()
                if time.monotonic() - self.cancelled_at > self.cancel_grace_s and not self.done.is_set():
                    self._end_the_step()

    def _end_the_step(self) -> None:
        reason = f"cancelled by an admin (ended inside a step still running {self.cancel_grace_s:g} s after)"
        with contextlib.suppress(*DB_ERRORS):
            self.store.give_up(self.name, JobStatus.CANCELLED, reason)
        log.warning("a cancelled job ran past its grace: ending the training process", extra={"job": self.job_id})
        logging.shutdown()
        os._exit(0)


class TrainingWorker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = worker_name(os.getpid())
        self.db = open_db(settings.database)
        self.store = JobStore(self.db)
        self.registry = Registry(self.db, settings.runtime_dir, settings.weights_dir, settings.initial_version)
        self.feedback = FeedbackStore(self.db, max_items=0)  # read here, never added to
        self.stopping = threading.Event()
        self._beat: Heartbeat | None = None

    def should_stop(self) -> bool:
        """What the training loop asks before each step."""
        beat = self._beat
        if beat is not None and beat.lost.is_set():
            raise JobLost(
                f"the job was given up on: worker {self.name} was silent for {self.settings.worker_timeout_s:g} s"
            )
        if self.stopping.is_set():
            raise Interrupted(f"worker {self.name} was asked to stop")
        return beat is not None and beat.cancel.is_set()

    def on_signal(self, signum: int, frame: object) -> None:
        """SIGTERM or SIGINT: an idle worker stops looking; a job that trains (or calibrates, which asks
        no question per step) stops where it is and reads 'interrupted'."""
        self.stopping.set()
        if self._beat is not None:
            raise Interrupted(f"worker {self.name} was asked to stop while the job ran")

    def run_once(self) -> str | None:
        """Give up on gone workers' jobs, claim one job and run it; its id, or None if none was queued."""
        self.db.migrated or self.db.upgrade()
        self.store.reap(self.settings.worker_timeout_s)
        job = self.store.claim(self.name, os.getpid())
        if job is None:
            return None
        log.info("claimed training job", extra={"job": job.id, "worker": self.name, "preset": job.preset})
        try:
            with Heartbeat(self.store, job, self.name, self.settings.heartbeat_s, self.settings.cancel_grace_s) as beat:
                self._beat = beat
                data = self.settings.data_dir
                status = run_job(job, self.store, self.registry, data, self.should_stop, self.feedback)
        except Interrupted as e:  # raised outside the job's own handling
            self.store.finish(job.id, JobStatus.INTERRUPTED, error=str(e))
            status = JobStatus.INTERRUPTED
        finally:
            self._beat = None
        log.info("training job done", extra={"job": job.id, "status": str(status)})
        return job.id

    def run(self, until_idle: bool = False) -> None:
        """Claim and run jobs until asked to stop, or (`until_idle`) until no job is queued."""
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
                if until_idle and not unreachable:
                    return
                self.stopping.wait(self.settings.worker_poll_s)


def lower_priority() -> None:
    """Predictions first. SCHED_IDLE runs this process only on cycles nobody else wants, and the
    scheduler preempts it the moment a web process wakes; nice 19 is the fallback elsewhere.

    Linux's autogroup scheduling shares the CPU fairly between sessions before it looks at any
    process's priority: a worker that leads a session of its own (as the web server starts it, so that
    a Ctrl-C meant for the server's terminal does not hit it) lowers its session's niceness too, or it
    would get as much CPU as the whole web server (measured: p99 of /predict x5.3 instead of x3 or
    less). A worker in someone else's session (`digits worker` typed in a terminal, or started by a
    test) leaves it alone: the niceness is the whole session's, and lowering it starved the shell,
    the benchmarks and the tests started from it (a flood client at 22% of a core beside 58% for the
    idle-class worker).
    """
    if os.getsid(0) == os.getpid():
        with contextlib.suppress(OSError):
            Path("/proc/self/autogroup").write_text("19")
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(19)


def cap_memory(limit: int) -> None:
    """No more than `limit` bytes of this process's own memory (RLIMIT_DATA, kept by the kernel, inherited
    by the processes it starts): past it an allocation fails with MemoryError and the job fails with a
    message, where the host's OOM killer would otherwise pick a process, perhaps a web worker. The
    estimate checked at submission is only an estimate. RLIMIT_AS would also count the address space
    that threads' stacks and malloc arenas reserve but never use."""
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def main(settings: Settings, until_idle: bool = False) -> int:
    """Run until SIGTERM or SIGINT (or, `until_idle`, an empty queue); a job running then is interrupted."""
    setup_logging(settings.log_level)
    use_one_blas_thread()
    lower_priority()
    cap_memory(settings.train_memory_cap)
    worker = TrainingWorker(settings)
    signal.signal(signal.SIGTERM, worker.on_signal)
    signal.signal(signal.SIGINT, worker.on_signal)
    log.info(
        "training worker started", extra={"worker": worker.name, "database": worker.db.engine.url.render_as_string()}
    )
    worker.run(until_idle)
    return 0


if __name__ == "__main__":  # how a web server starts its own worker (app.services.training_queue)
    ap = argparse.ArgumentParser(description="Run queued training jobs (`digits worker` is the public way).")
    ap.add_argument("--until-idle", action="store_true", help="exit when no job is queued")
    raise SystemExit(main(Settings(), ap.parse_args().until_idle))

"""Training jobs and their progress, in the shared database (SQLite file or PostgreSQL; see app.infra.db).

At most one job is queued or running at a time; a partial unique index enforces it inside the
database, so two web processes (or replicas) accepting POST /train at the same instant cannot both
win. The table is the queue: a training worker (app.services.training_worker) claims a job
(`claim`) and proves it is alive (`heartbeat`) until it finishes; the jobs of a worker that is gone
are given up on (`reap`, `give_up`).
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel

from app.infra.db import ACTIVE, Db, JobStatus, jobs, open_db, progress

TERMINAL = tuple(s for s in JobStatus if s not in ACTIVE)
_ACTIVE = jobs.c.status.in_([s.value for s in ACTIVE])


def worker_name(pid: int) -> str:
    """How a training worker is named in its jobs' rows: host and process id."""
    return f"{socket.gethostname()}:{pid}"


class JobConflict(Exception):
    """Another job is queued or running."""


class Job(BaseModel):
    """One training job, as the store keeps it (the API's TrainJob adds its duration, hides its pid)."""

    id: str
    status: JobStatus
    preset: str
    config: dict[str, Any]  # the TrainConfig, as a dict
    activate: str  # "if_better" or "always"
    created: float
    started: float | None = None
    finished: float | None = None
    pid: int | None = None
    worker: str | None = None
    heartbeat: float | None = None
    cancel_requested: bool = False
    progress: dict[str, Any] | None = None
    error: str | None = None
    version: str | None = None
    promoted: bool | None = None
    result: dict[str, Any] | None = None

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    def seconds_run(self) -> float | None:
        """From start to finish, or to now while it runs; None before it starts."""
        return round((self.finished or time.time()) - self.started, 2) if self.started else None

    @classmethod
    def from_row(cls, row: sa.Row) -> Job:
        job = dict(row._mapping)
        for key in ("config", "progress", "result"):
            job[key] = json.loads(job[key]) if job[key] else None
        return cls.model_validate(job)  # 0/1 columns become booleans, status its enum


class JobStore:
    def __init__(self, db: Db | Path) -> None:
        self.db = db if isinstance(db, Db) else open_db(Path(db))

    def _one(self, query: sa.Select) -> Job | None:
        with self.db.read() as conn:
            row = conn.execute(query).first()
        return Job.from_row(row) if row else None

    def _update(self, where: sa.ColumnElement, **values: Any) -> int:
        with self.db.write() as conn:
            return conn.execute(jobs.update().where(where).values(**values)).rowcount

    # ---- the web side ------------------------------------------------------------------------

    def create(self, preset: str, config: dict[str, Any], activate: str) -> Job:
        job_id = uuid.uuid4().hex[:12]
        row = {"id": job_id, "status": JobStatus.QUEUED.value, "preset": preset, "config": json.dumps(config),
               "activate": activate, "created": time.time()}  # fmt: skip
        try:
            with self.db.write() as conn:
                conn.execute(jobs.insert().values(**row))
        except sa.exc.IntegrityError:
            raise JobConflict(self.active_id() or "?") from None
        return self.get(job_id)

    def get(self, job_id: str) -> Job | None:
        return self._one(sa.select(jobs).where(jobs.c.id == job_id))

    def list(self, limit: int = 100) -> list[Job]:
        with self.db.read() as conn:
            rows = conn.execute(sa.select(jobs).order_by(jobs.c.created.desc()).limit(limit)).all()
        return [Job.from_row(r) for r in rows]

    def active_jobs(self) -> list[Job]:
        with self.db.read() as conn:
            return [Job.from_row(r) for r in conn.execute(sa.select(jobs).where(_ACTIVE)).all()]

    def active_id(self) -> str | None:
        with self.db.read() as conn:
            return conn.execute(sa.select(jobs.c.id).where(_ACTIVE)).scalar()

    def request_cancel(self, job_id: str) -> None:
        """A queued job is cancelled at once (no worker may be there to see the flag); a running one
        is told through the flag and stops within a step."""
        queued = sa.and_(jobs.c.id == job_id, jobs.c.status == JobStatus.QUEUED.value)
        cancelled = {"status": JobStatus.CANCELLED.value, "error": "cancelled by an admin before it started"}
        if not self._update(queued, cancel_requested=1, finished=time.time(), **cancelled):
            self._update(jobs.c.id == job_id, cancel_requested=1)

    def progress_since(self, job_id: str, seq: int) -> list[tuple[int, dict[str, Any]]]:
        query = (
            sa.select(progress.c.seq, progress.c.data)
            .where(progress.c.job_id == job_id, progress.c.seq > seq)
            .order_by(progress.c.seq)
        )
        with self.db.read() as conn:
            return [(r.seq, json.loads(r.data)) for r in conn.execute(query)]

    def finish(self, job_id: str, status: JobStatus, **fields: Any) -> bool:
        """Move an active job to a terminal status; a job already finished stays as it is."""
        status = JobStatus(status)
        if status not in TERMINAL:
            raise ValueError(f"{status} is not a final status")
        values = {k: json.dumps(v) if k == "result" else v for k, v in fields.items()}
        where = sa.and_(jobs.c.id == job_id, _ACTIVE)
        return self._update(where, status=status.value, finished=time.time(), **values) == 1

    # ---- the training worker's side ----------------------------------------------------------

    def add_progress(self, job_id: str, seq: int, data: dict[str, Any]) -> None:
        text = json.dumps(data)
        with self.db.write() as conn:
            conn.execute(progress.insert().values(job_id=job_id, seq=seq, data=text))
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(progress=text))

    def _clock(self) -> sa.ColumnElement | float:
        """Now, for heartbeats and their timeout: the database server's clock on PostgreSQL, so that
        workers and replicas on hosts whose clocks disagree still judge silence alike."""
        if self.db.is_postgres:
            return sa.extract("epoch", sa.func.clock_timestamp())
        return time.time()

    def claim(self, worker: str, pid: int) -> Job | None:
        """Take the oldest queued job for `worker`, or None. One statement: on PostgreSQL the row is
        locked with SKIP LOCKED, so racing workers never wait on nor take the same job; on SQLite the
        write lock serialises them, and the status test in the WHERE makes the loser update nothing."""
        now = self._clock()
        oldest = (
            sa.select(jobs.c.id)
            .where(jobs.c.status == JobStatus.QUEUED.value)
            .order_by(jobs.c.created)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        query = (
            jobs.update()
            .where(jobs.c.id == oldest, jobs.c.status == JobStatus.QUEUED.value)
            .values(status=JobStatus.RUNNING.value, started=time.time(), heartbeat=now, worker=worker, pid=pid)
            .returning(jobs.c.id)
        )
        with self.db.write() as conn:
            job_id = conn.execute(query).scalar()
        return self.get(job_id) if job_id else None

    def heartbeat(self, job_id: str, worker: str) -> bool | None:
        """The worker is alive: None if the job is no longer its own (finished, or given up on),
        else whether an admin asked to cancel it."""
        query = (
            jobs.update()
            .where(jobs.c.id == job_id, jobs.c.worker == worker, jobs.c.status == JobStatus.RUNNING.value)
            .values(heartbeat=self._clock())
            .returning(jobs.c.cancel_requested)
        )
        with self.db.write() as conn:
            row = conn.execute(query).first()
        return None if row is None else bool(row[0])

    def is_running_on(self, conn: sa.Connection | None, job_id: str, worker: str) -> bool:
        """Is the job still running on `worker`? Inside the caller's transaction when given one (and then
        the row stays locked until it ends, on PostgreSQL)."""
        query = (
            sa.select(jobs.c.id)
            .where(jobs.c.id == job_id, jobs.c.worker == worker, jobs.c.status == JobStatus.RUNNING.value)
            .with_for_update()
        )
        if conn is None:
            with self.db.write() as c:
                return c.execute(query).first() is not None
        return conn.execute(query).first() is not None

    def give_up(self, worker: str, status: JobStatus, error: str) -> list[str]:
        """The active jobs of `worker`, which is gone, take a final status; returns their ids."""
        query = (
            jobs.update()
            .where(_ACTIVE, jobs.c.worker == worker)
            .values(status=JobStatus(status).value, finished=time.time(), error=error)
            .returning(jobs.c.id)
        )
        with self.db.write() as conn:
            return list(conn.execute(query).scalars())

    def reap(self, timeout_s: float) -> list[str]:
        """Jobs whose worker has not been heard from for `timeout_s` become failed; returns their ids.
        (A worker this server started and saw die is given up on at once: app.services.training_queue.)"""
        now = self._clock()
        stale = sa.and_(
            jobs.c.status == JobStatus.RUNNING.value, jobs.c.worker.is_not(None), jobs.c.heartbeat < now - timeout_s
        )
        error = sa.literal(f"its worker stopped answering (no heartbeat for {timeout_s:g} s): ") + jobs.c.worker
        query = (
            jobs.update().where(stale).values(status=JobStatus.FAILED.value, finished=time.time(), error=error)
        ).returning(jobs.c.id)
        # Looked for first, in a read: every web process reaps every second, and on SQLite a write takes
        # the one write lock, which a web process's thread at saturation held for up to 150 ms (waiting
        # for the GIL between its statements), while a correction waited for it.
        with self.db.read() as conn:
            if conn.execute(sa.select(jobs.c.id).where(stale).limit(1)).first() is None:
                return []
        with self.db.write() as conn:
            return list(conn.execute(query).scalars())

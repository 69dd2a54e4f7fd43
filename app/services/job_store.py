"""Training jobs in SQLite (WAL), shared by every web worker and the training process.

At most one job is queued or running at a time; a partial unique index enforces it inside the
database, so two workers accepting POST /train at the same instant cannot both win.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from app.services.sqlite import Database


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
TERMINAL = tuple(s for s in JobStatus if s not in ACTIVE)
_ACTIVE_SQL = "(" + ", ".join(f"'{s}'" for s in ACTIVE) + ")"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    preset TEXT NOT NULL,
    config TEXT NOT NULL,
    activate TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    pid INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    progress TEXT,
    error TEXT,
    version TEXT,
    promoted INTEGER,
    result TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_job ON jobs ((status IN {_ACTIVE_SQL}))
    WHERE status IN {_ACTIVE_SQL};
CREATE TABLE IF NOT EXISTS progress (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
"""


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
    def from_row(cls, row: sqlite3.Row) -> Job:
        job = dict(row)
        for key in ("config", "progress", "result"):
            job[key] = json.loads(job[key]) if job[key] else None
        return cls.model_validate(job)  # 0/1 columns become booleans, status its enum


class JobStore(Database):
    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA)

    # ---- the web side ------------------------------------------------------------------------

    def create(self, preset: str, config: dict[str, Any], activate: str) -> Job:
        job_id = uuid.uuid4().hex[:12]
        try:
            self.connection().execute(
                "INSERT INTO jobs (id, status, preset, config, activate, created) VALUES (?, ?, ?, ?, ?, ?)",
                (job_id, JobStatus.QUEUED, preset, json.dumps(config), activate, time.time()),
            )
        except sqlite3.IntegrityError:
            raise JobConflict(self.active_id() or "?") from None
        return self.get(job_id)

    def get(self, job_id: str) -> Job | None:
        row = self.connection().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job.from_row(row) if row else None

    def list(self, limit: int = 100) -> list[Job]:
        rows = self.connection().execute("SELECT * FROM jobs ORDER BY created DESC LIMIT ?", (limit,)).fetchall()
        return [Job.from_row(r) for r in rows]

    def active_jobs(self) -> list[Job]:
        rows = self.connection().execute(f"SELECT * FROM jobs WHERE status IN {_ACTIVE_SQL}").fetchall()
        return [Job.from_row(r) for r in rows]

    def active_id(self) -> str | None:
        row = self.connection().execute(f"SELECT id FROM jobs WHERE status IN {_ACTIVE_SQL}").fetchone()
        return row["id"] if row else None

    def request_cancel(self, job_id: str) -> None:
        self.connection().execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))

    def progress_since(self, job_id: str, seq: int) -> list[tuple[int, dict[str, Any]]]:
        rows = (
            self.connection()
            .execute("SELECT seq, data FROM progress WHERE job_id = ? AND seq > ? ORDER BY seq", (job_id, seq))
            .fetchall()
        )
        return [(r["seq"], json.loads(r["data"])) for r in rows]

    def finish(self, job_id: str, status: JobStatus, **fields: Any) -> bool:
        """Move an active job to a terminal status; a job already finished stays as it is."""
        if status not in TERMINAL:
            raise ValueError(f"{status} is not a final status")
        sets = ["status = ?", "finished = ?"]
        values: list[Any] = [status, time.time()]
        for key, value in fields.items():
            sets.append(f"{key} = ?")
            values.append(json.dumps(value) if key == "result" else value)
        cur = self.connection().execute(
            f"UPDATE jobs SET {', '.join(sets)} WHERE id = ? AND status IN {_ACTIVE_SQL}", (*values, job_id)
        )
        return cur.rowcount == 1

    # ---- the training process's side ---------------------------------------------------------

    def mark_running(self, job_id: str, pid: int) -> None:
        self.connection().execute(
            "UPDATE jobs SET status = ?, started = ?, pid = ? WHERE id = ?",
            (JobStatus.RUNNING, time.time(), pid, job_id),
        )

    def cancel_requested(self, job_id: str) -> bool:
        row = self.connection().execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row[0])

    def add_progress(self, job_id: str, seq: int, data: dict[str, Any]) -> None:
        db = self.connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("INSERT INTO progress (job_id, seq, data) VALUES (?, ?, ?)", (job_id, seq, json.dumps(data)))
            db.execute("UPDATE jobs SET progress = ? WHERE id = ?", (json.dumps(data), job_id))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

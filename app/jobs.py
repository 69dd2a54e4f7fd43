"""Training jobs in SQLite (WAL), shared by every web worker and the training process.

At most one job is queued or running at a time; a partial unique index enforces it inside the
database, so two workers accepting POST /train at the same instant cannot both win.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ACTIVE = ("queued", "running")
TERMINAL = ("succeeded", "failed", "cancelled", "interrupted")

_SCHEMA = """
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
CREATE UNIQUE INDEX IF NOT EXISTS one_active_job ON jobs ((status IN ('queued', 'running')))
    WHERE status IN ('queued', 'running');
CREATE TABLE IF NOT EXISTS progress (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
"""


class JobConflict(Exception):
    """Another job is queued or running."""


class JobStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer, nor it them
            db.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            yield db
        finally:
            db.close()

    @staticmethod
    def _row(row: sqlite3.Row | None) -> dict[str, Any] | None:
        if row is None:
            return None
        job = dict(row)
        for key in ("config", "progress", "result"):
            job[key] = json.loads(job[key]) if job[key] else None
        job["promoted"] = None if job["promoted"] is None else bool(job["promoted"])
        job["cancel_requested"] = bool(job["cancel_requested"])
        return job

    # ---- the web side ------------------------------------------------------------------------

    def create(self, preset: str, config: dict[str, Any], activate: str) -> dict[str, Any]:
        job_id = uuid.uuid4().hex[:12]
        try:
            with self._connect() as db:
                db.execute(
                    "INSERT INTO jobs (id, status, preset, config, activate, created) VALUES (?, 'queued', ?, ?, ?, ?)",
                    (job_id, preset, json.dumps(config), activate, time.time()),
                )
        except sqlite3.IntegrityError:
            raise JobConflict(self.active_id() or "?") from None
        return self.get(job_id)

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._connect() as db:
            return self._row(db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())

    def list(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM jobs ORDER BY created DESC LIMIT ?", (limit,)).fetchall()
        return [self._row(r) for r in rows]

    def active_id(self) -> str | None:
        with self._connect() as db:
            row = db.execute("SELECT id FROM jobs WHERE status IN ('queued', 'running')").fetchone()
        return row["id"] if row else None

    def request_cancel(self, job_id: str) -> None:
        with self._connect() as db:
            db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))

    def progress_since(self, job_id: str, seq: int) -> list[tuple[int, dict[str, Any]]]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT seq, data FROM progress WHERE job_id = ? AND seq > ? ORDER BY seq", (job_id, seq)
            ).fetchall()
        return [(r["seq"], json.loads(r["data"])) for r in rows]

    def finish(self, job_id: str, status: str, *, only_if_active: bool = True, **fields: Any) -> bool:
        """Move a job to a terminal status; with only_if_active, a job already finished stays as it is."""
        assert status in TERMINAL
        sets = ["status = ?", "finished = ?"]
        values: list[Any] = [status, time.time()]
        for key, value in fields.items():
            sets.append(f"{key} = ?")
            values.append(json.dumps(value) if key == "result" else value)
        where = "id = ?" + (" AND status IN ('queued', 'running')" if only_if_active else "")
        with self._connect() as db:
            cur = db.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE {where}", (*values, job_id))
        return cur.rowcount == 1

    # ---- the training process's side ---------------------------------------------------------

    def mark_running(self, job_id: str, pid: int) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE jobs SET status = 'running', started = ?, pid = ? WHERE id = ?", (time.time(), pid, job_id)
            )

    def add_progress(self, job_id: str, seq: int, data: dict[str, Any]) -> None:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO progress (job_id, seq, data) VALUES (?, ?, ?)", (job_id, seq, json.dumps(data)))
            db.execute("UPDATE jobs SET progress = ? WHERE id = ?", (json.dumps(data), job_id))
            db.execute("COMMIT")

    def active_jobs(self) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM jobs WHERE status IN ('queued', 'running')").fetchall()
        return [self._row(r) for r in rows]

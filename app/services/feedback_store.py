"""Corrections from the people who draw: what they sent, what the model said, what they say it is.

In the runtime folder's SQLite database (WAL, beside the training jobs). Each image is stored once
(its SHA-256 is the key), as the exact bytes received and as the 28x28 input the server made of it,
with the served model's answer. Clients are kept as a salted hash of their address, never the
address; the salt is made once per runtime folder and never leaves it. Nothing here is used for
training until an admin has accepted it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from app.services.sqlite import Database


class FeedbackStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    client TEXT NOT NULL,
    label INTEGER NOT NULL,
    status TEXT NOT NULL,
    model_version TEXT NOT NULL,
    predicted INTEGER NOT NULL,
    probabilities TEXT NOT NULL,
    claimed_version TEXT,
    claimed_digit INTEGER,
    media_type TEXT NOT NULL,
    bytes INTEGER NOT NULL DEFAULT 0,
    original BLOB NOT NULL,
    input_png BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_by_status ON feedback (status, created);
"""


class StoreFull(Exception):
    """The corrections store holds as many items as it is allowed to."""


@dataclass(frozen=True)
class Correction:
    """One correction as the page or an API client sends it, with the server's own reading of it."""

    label: int  # the digit the person says it is
    original: bytes  # the image exactly as received
    media_type: str
    input_png: bytes  # the 28x28 input the server made of it
    model_version: str  # the version that answered here
    predicted: int
    probabilities: list[float]
    claimed_version: str | None = None  # what the client says it was shown
    claimed_digit: int | None = None


@dataclass(frozen=True)
class Stored:
    id: str
    duplicate: bool
    status: FeedbackStatus


def client_salt(runtime_dir: Path) -> bytes:
    """A random salt per runtime folder, shared by all workers (the first one makes it)."""
    path = runtime_dir / "feedback_salt"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # the creating worker may be mid-write
            salt = path.read_bytes()
            if len(salt) == 32:
                return salt
            time.sleep(0.02)
        raise RuntimeError(f"{path.name} is damaged; delete it to make a new one") from None
    salt = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as f:
        f.write(salt)
    return salt


class FeedbackStore(Database):
    def __init__(self, path: Path, salt: bytes, max_items: int, max_bytes: int = 2**62) -> None:
        super().__init__(path, _SCHEMA)
        self.salt, self.max_items, self.max_bytes = salt, max_items, max_bytes

    def client_id(self, address: str) -> str:
        return hashlib.sha256(self.salt + address.encode()).hexdigest()[:16]

    def add(self, c: Correction, address: str) -> Stored:
        """Store a correction, once per image; raises StoreFull, or sqlite3.Error when the disk says no."""
        digest = hashlib.sha256(c.original).hexdigest()
        db = self.connection()
        db.execute("BEGIN IMMEDIATE")  # one writer: the count and the insert see the same store
        try:
            row = db.execute("SELECT id, status FROM feedback WHERE sha256 = ?", (digest,)).fetchone()
            if row is not None:
                db.execute("COMMIT")
                return Stored(row["id"], True, FeedbackStatus(row["status"]))
            items, size = db.execute("SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM feedback").fetchone()
            if items >= self.max_items:
                raise StoreFull(f"the corrections store holds its limit of {self.max_items} items")
            if size + len(c.original) > self.max_bytes:
                raise StoreFull(f"the corrections store holds its limit of {self.max_bytes} bytes of images")
            item_id = uuid.uuid4().hex[:12]
            db.execute(
                "INSERT INTO feedback (id, sha256, created, client, label, status, model_version, predicted,"
                " probabilities, claimed_version, claimed_digit, media_type, bytes, original, input_png)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (item_id, digest, time.time(), self.client_id(address), c.label, FeedbackStatus.PENDING,
                 c.model_version, c.predicted, json.dumps(c.probabilities), c.claimed_version, c.claimed_digit,
                 c.media_type, len(c.original), c.original, c.input_png),
            )  # fmt: skip
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return Stored(item_id, False, FeedbackStatus.PENDING)

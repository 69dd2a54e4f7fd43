"""Corrections from the people who draw: what they sent, what the model said, what they say it is.

In the shared database, beside the training jobs (app.infra.db). Each image is stored once
(the SHA-256 of the bytes received is the key), as its pixels re-encoded (model.images.kept_copy: a
sender's metadata and added chunks are not kept) and as the 28x28 input the server made of it,
with the served model's answer. Clients are kept as a salted hash of their address, never the
address; the salt is made once per database and never leaves it. Nothing here is used for
training until an admin has accepted it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import sqlalchemy as sa

from app.infra.db import Busy, Db, feedback, open_db, shared_secret


class FeedbackStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class StoreFull(Exception):
    """The corrections store holds as many items as it is allowed to."""


class ClientQuotaFull(Exception):
    """This client has as many corrections waiting for review as one client may."""


@dataclass(frozen=True)
class Correction:
    """One correction as the page or an API client sends it, with the server's own reading of it."""

    label: int  # the digit the person says it is
    sha256: str  # of the image exactly as received: one item per image sent, and its side of the holdout split
    original: bytes  # the image's pixels as read, re-encoded without metadata or added chunks (images.kept_copy)
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


class FeedbackStore:
    def __init__(
        self,
        db: Db | Path,
        max_items: int,
        max_bytes: int = 2**62,
        legacy_salt: Path | None = None,
        max_pending_per_client: int = 2**31,
    ) -> None:
        """The clients' hashes use the database's own salt, so that every process and replica agrees;
        an install from before kept it in `legacy_salt`, and that one is adopted."""
        self.max_pending_per_client = max_pending_per_client
        self.db = db if isinstance(db, Db) else open_db(Path(db))
        self.max_items, self.max_bytes, self.legacy_salt = max_items, max_bytes, legacy_salt
        self._salt: bytes | None = None

    @property
    def salt(self) -> bytes:
        if self._salt is None:  # once the database answers
            legacy = self.legacy_salt.read_bytes() if self.legacy_salt and self.legacy_salt.exists() else b""
            initial = legacy if len(legacy) == 32 else secrets.token_bytes(32)
            self._salt = shared_secret(self.db, "feedback_client_salt", initial)[0]
        return self._salt

    def client_id(self, address: str) -> str:
        return hashlib.sha256(self.salt + address.encode()).hexdigest()[:16]

    def add(self, c: Correction, address: str, wait: bool = True) -> Stored:
        """Store a correction, once per image; raises StoreFull, or a database error when it says no;
        `wait=False` (SQLite): app.infra.db.Busy at once if another writer holds the lock."""
        digest = c.sha256
        if not wait and self._salt is None:
            raise Busy("the clients' salt is not read yet")  # its first read may wait
        client = self.client_id(address)  # before the write lock: the salt may need a write of its own
        # One writer at a time: the count and the insert see the same store.
        with self.db.write(lock="feedback", wait=wait) as conn:
            row = conn.execute(sa.select(feedback.c.id, feedback.c.status).where(feedback.c.sha256 == digest)).first()
            if row is not None:
                return Stored(row.id, True, FeedbackStatus(row.status))
            items, size = conn.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(feedback.c.bytes), 0))
            ).one()
            if items >= self.max_items:
                raise StoreFull(f"the corrections store holds its limit of {self.max_items} items")
            pending = conn.execute(
                sa.select(sa.func.count()).where(
                    feedback.c.client == client, feedback.c.status == FeedbackStatus.PENDING.value
                )
            ).scalar_one()
            if pending >= self.max_pending_per_client:
                raise ClientQuotaFull(
                    f"{pending} of this client's corrections are waiting for review, as many as one client may send"
                )
            if size + len(c.original) > self.max_bytes:
                raise StoreFull(f"the corrections store holds its limit of {self.max_bytes} bytes of images")
            item_id = uuid.uuid4().hex[:12]
            conn.execute(feedback.insert().values(
                id=item_id, sha256=digest, created=time.time(), client=client, label=c.label,
                status=FeedbackStatus.PENDING.value, model_version=c.model_version, predicted=c.predicted,
                probabilities=json.dumps(c.probabilities), confidence=float(c.probabilities[c.predicted]),
                claimed_version=c.claimed_version,
                claimed_digit=c.claimed_digit, media_type=c.media_type, bytes=len(c.original), original=c.original,
                input_png=c.input_png,
            ))  # fmt: skip
        return Stored(item_id, False, FeedbackStatus.PENDING)

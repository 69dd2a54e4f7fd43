"""The admin's side of the corrections: review them, and turn the accepted ones into data.

Accepted corrections split once and for all by content hash: about a third are the real-drawing
holdout every version is measured on, the rest the pool a training run may learn from.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import uuid
import zipfile
from collections.abc import Generator
from dataclasses import dataclass
from typing import IO

import numpy as np
import sqlalchemy as sa
from PIL import Image

from app.infra.db import feedback
from app.services.feedback_store import FeedbackStatus, FeedbackStore
from model.spec import SIDE

EXPORT_README = """Accepted corrections from the Digits drawing page, as MNIST-format arrays.
x: uint8 (n, 28, 28), 0 = background, 255 = ink, made by the server's normalisation (mnist-v1).
y: uint8 (n,), the digit the person said it is, as accepted (or relabelled) by an admin.
sha256: the SHA-256 of each image as it was sent; holdout: True for the real-drawing holdout
(about a third, chosen by that hash), False for the training pool."""
SUSPICIOUS_CONFIDENCE = 0.9  # the model was this sure of another digit than the person's label
BURST_ITEMS, BURST_SECONDS = 20, 600  # a client that sent this many items within this long


@dataclass(frozen=True)
class Filters:
    status: FeedbackStatus | None = None
    label: int | None = None
    disagree: bool | None = None  # the model's answer differs from the label
    client: str | None = None


def labelled_checksum(digests: list[str], labels: np.ndarray) -> str:
    """Which images, with which labels: changes when one is added, removed or relabelled."""
    return hashlib.md5("".join(f"{d}:{int(y)}" for d, y in zip(digests, labels, strict=True)).encode()).hexdigest()


def in_holdout(sha256: str) -> bool:
    """About a third of the accepted corrections, chosen by content hash: the split never changes."""
    return int(sha256[:8], 16) % 3 == 0


def _where(f: Filters) -> list[sa.ColumnElement]:
    clauses = [feedback.c[column] == value
               for column, value in (("status", f.status), ("label", f.label), ("client", f.client))
               if value is not None]  # fmt: skip
    if f.disagree is not None:
        same = feedback.c.predicted == feedback.c.label
        clauses.append(~same if f.disagree else same)
    return clauses


def _bursts(now: float) -> sa.Select:
    """The clients that sent BURST_ITEMS or more items in the last BURST_SECONDS."""
    c = feedback.c
    # The recent items first, by the queue's index (ordered, so SQLite keeps the subquery): grouped
    # straight away, SQLite walked the by-client index and read every row's time from the table.
    recent = sa.select(c.client).where(c.created > now - BURST_SECONDS).order_by(c.created).subquery()
    return sa.select(recent.c.client).group_by(recent.c.client).having(sa.func.count() >= BURST_ITEMS)


class Review:
    """The admin's side of the store: list, accept, reject, relabel, delete, export."""

    def __init__(self, store: FeedbackStore) -> None:
        self.store = store

    def list(self, f: Filters, limit: int = 100, offset: int = 0) -> tuple[int, list[dict]]:
        """(how many match, one page of them): suspicious items first, then the newest. Sorted and paged
        by the database, from the queue's index: a page costs the same in a queue of 100,000."""
        where = _where(f)
        c = feedback.c
        with self.store.db.read() as db:
            total = db.execute(sa.select(sa.func.count()).select_from(feedback).where(*where)).scalar()
            bursts = set(db.execute(_bursts(time.time())).scalars())
            sure_of_another = (c.predicted != c.label) & (c.confidence >= SUSPICIOUS_CONFIDENCE)
            suspicious = sure_of_another | c.client.in_(bursts) if bursts else sure_of_another
            order = sa.case((suspicious, 0), else_=1)
            page_ids = (
                db.execute(
                    sa.select(c.id).where(*where).order_by(order, c.created.desc(), c.id).limit(limit).offset(offset)
                )
                .scalars()
                .all()
            )
            columns = (c.id, c.sha256, c.created, c.client, c.label, c.status, c.model_version, c.predicted,
                       c.probabilities, c.claimed_digit, c.input_png)  # fmt: skip
            rows = {r.id: r._mapping for r in db.execute(sa.select(*columns).where(c.id.in_(page_ids)))}
        page = [self._item(rows[i], bursts) for i in page_ids if i in rows]
        for it in page:
            it["input_png"] = rows[it["id"]]["input_png"]
        return total, page

    @staticmethod
    def _item(r, bursts: set[str]) -> dict:
        probs = json.loads(r["probabilities"])
        reasons = []
        if r["predicted"] != r["label"] and probs[r["predicted"]] >= SUSPICIOUS_CONFIDENCE:
            reasons.append(f"the model was {probs[r['predicted']]:.0%} sure of {r['predicted']}")
        if r["client"] in bursts:
            reasons.append(f"its client sent {BURST_ITEMS} or more items in {BURST_SECONDS // 60} minutes")
        return {
            "id": r["id"], "created": r["created"], "client": r["client"], "label": r["label"],
            "status": r["status"], "model_version": r["model_version"], "predicted": r["predicted"],
            "confidence": probs[r["predicted"]], "claimed_digit": r["claimed_digit"],
            "holdout": in_holdout(r["sha256"]), "suspicious": bool(reasons), "reasons": reasons,
        }  # fmt: skip

    def review(self, ids: list[str], action: str, label: int | None = None) -> int:
        """Accept, reject or relabel (and accept) items; returns how many there were."""
        if action == "relabel":
            values = {"label": label, "status": FeedbackStatus.ACCEPTED.value}
        else:
            values = {"status": (FeedbackStatus.ACCEPTED if action == "accept" else FeedbackStatus.REJECTED).value}
        with self.store.db.write() as db:
            return db.execute(feedback.update().where(feedback.c.id.in_(ids)).values(**values)).rowcount

    def delete(self, item_id: str | None = None, client: str | None = None) -> int:
        column, value = ("id", item_id) if item_id is not None else ("client", client)
        with self.store.db.write() as db:
            return db.execute(feedback.delete().where(feedback.c[column] == value)).rowcount

    def _accepted_rows(self, columns: list[str], part: str | None) -> list[sa.Row]:
        query = (
            sa.select(feedback.c.sha256, *(feedback.c[k] for k in columns))
            .where(feedback.c.status == FeedbackStatus.ACCEPTED.value)
            .order_by(feedback.c.sha256)
        )
        with self.store.db.read() as db:
            rows = db.execute(query).all()
        return rows if part is None else [r for r in rows if in_holdout(r.sha256) == (part == "holdout")]

    def accepted(self, part: str | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Accepted corrections as (x uint8 (n, 28, 28), labels (n,), sha256s); part "holdout" or "pool"
        for one side of the split."""
        rows = self._accepted_rows(["label", "input_png"], part)
        x = np.stack([np.asarray(Image.open(io.BytesIO(r.input_png)).convert("L")) for r in rows]) if rows else (
            np.zeros((0, SIDE, SIDE), np.uint8)
        )  # fmt: skip
        return x, np.array([r.label for r in rows], np.uint8), [r.sha256 for r in rows]

    def count(self, part: str | None = None) -> int:
        """How many accepted corrections there are (in one part of the split, if named)."""
        return len(self._accepted_rows([], part))

    def checksum_of(self, part: str | None = None) -> str:
        """The accepted set's (or one part's) checksum, from the table alone: no image is read."""
        rows = self._accepted_rows(["label"], part)
        return labelled_checksum([r.sha256 for r in rows], np.array([r.label for r in rows]))

    def export(self, file: IO[bytes]) -> int:
        """Write the accepted corrections as an .npz (fields in EXPORT_README); returns how many."""
        chunks = self.export_chunks()
        while True:
            try:
                file.write(next(chunks))
            except StopIteration as done:
                return done.value

    def export_chunks(self, rows_per_chunk: int = 1000) -> Generator[bytes, None, int]:
        """The export's .npz file in pieces, as np.savez would write it (a zip of .npy arrays, stored),
        with at most `rows_per_chunk` images in memory at a time: 50,000 corrections are a 52 MB file.
        Everything is read in one snapshot, so the header's count and the images agree. Returns how many."""
        out = _Chunks()
        with self.store.db.read() as db, zipfile.ZipFile(out, "w") as npz:
            if self.store.db.is_postgres:  # one snapshot for every statement, as SQLite's transaction gives
                db = db.execution_options(isolation_level="REPEATABLE READ")
            c = feedback.c
            accepted = c.status == FeedbackStatus.ACCEPTED.value
            rows = db.execute(sa.select(c.id, c.sha256, c.label).where(accepted).order_by(c.sha256)).all()
            with npz.open("x.npy", "w", force_zip64=True) as x:
                header = {"descr": "|u1", "fortran_order": False, "shape": (len(rows), SIDE, SIDE)}
                np.lib.format.write_array_header_2_0(x, header)
                for start in range(0, len(rows), rows_per_chunk):
                    ids = [r.id for r in rows[start : start + rows_per_chunk]]
                    pngs = dict(db.execute(sa.select(c.id, c.input_png).where(c.id.in_(ids))).all())
                    for i in ids:
                        x.write(np.asarray(Image.open(io.BytesIO(pngs[i])).convert("L"), np.uint8).tobytes())
                    yield out.take()
            digests = [r.sha256 for r in rows]
            fields = {
                "y": np.array([r.label for r in rows], np.uint8), "sha256": np.array(digests, dtype="U64"),
                "holdout": np.array([in_holdout(d) for d in digests], bool), "README": np.array(EXPORT_README),
            }  # fmt: skip
            for name, array in fields.items():
                with npz.open(f"{name}.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, array, allow_pickle=False)
        yield out.take()
        return len(rows)

    def import_items(
        self, x: np.ndarray, y: np.ndarray, digests: list[str] | None, status: FeedbackStatus, client: str
    ) -> int:
        """Corrections from an export file (already 28x28 inputs): stored once each, under the hash of
        the image first sent when the file has it, so that the holdout split stays the same."""
        added = 0
        with self.store.db.write() as db:
            for i, (image, label) in enumerate(zip(x, y, strict=True)):
                png = _png(image)
                digest = digests[i] if digests is not None else hashlib.sha256(png).hexdigest()
                row = dict(id=uuid.uuid4().hex[:12], sha256=digest, created=time.time(), client=client,
                           label=int(label), status=status.value, model_version="", predicted=int(label),
                           probabilities=json.dumps([float(d == label) for d in range(10)]), confidence=1.0,
                           media_type="image/png",
                           original=png, input_png=png)  # fmt: skip
                inserted = db.execute(self.store.db.insert_ignoring_duplicates(feedback).values(**row)).first()
                added += inserted is not None
        return added


class _Chunks(io.RawIOBase):
    """A file the zip writer writes to and the export takes the bytes of as they come (not seekable, so
    zipfile puts each member's sizes after its data)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.parts.append(bytes(b))
        return len(b)

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8), mode="L").save(buf, "PNG")
    return buf.getvalue()

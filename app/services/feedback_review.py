"""The admin's side of the corrections: review them, and turn the accepted ones into data.

Accepted corrections split once and for all by content hash: about a third are the real-drawing
holdout every version is measured on, the rest the pool a training run may learn from.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import time
import uuid
from dataclasses import dataclass
from typing import IO

import numpy as np
from PIL import Image

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


def checksum(digests: list[str], labels: np.ndarray) -> str:
    """Which images, with which labels: changes when one is added, removed or relabelled."""
    return hashlib.md5("".join(f"{d}:{int(y)}" for d, y in zip(digests, labels, strict=True)).encode()).hexdigest()


def holdout(sha256: str) -> bool:
    """About a third of the accepted corrections, chosen by content hash: the split never changes."""
    return int(sha256[:8], 16) % 3 == 0


def _where(f: Filters) -> tuple[str, list]:
    clauses, values = [], []
    for column, value in (("status", f.status), ("label", f.label), ("client", f.client)):
        if value is not None:
            clauses.append(f"{column} = ?")
            values.append(value)
    if f.disagree is not None:
        clauses.append("predicted != label" if f.disagree else "predicted = label")
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", values


class Review:
    """The admin's side of the store: list, accept, reject, relabel, delete, export."""

    def __init__(self, store: FeedbackStore) -> None:
        self.store = store

    def list(self, f: Filters, limit: int = 100, offset: int = 0) -> tuple[int, list[dict]]:
        """(how many match, one page of them): suspicious items first, then the newest."""
        where, values = _where(f)
        db = self.store.connection()
        total = db.execute(f"SELECT COUNT(*) FROM feedback{where}", values).fetchone()[0]
        bursts = {
            r[0]
            for r in db.execute(
                "SELECT client FROM feedback WHERE created > ? GROUP BY client HAVING COUNT(*) >= ?",
                (time.time() - BURST_SECONDS, BURST_ITEMS),
            )
        }
        rows = db.execute(
            f"SELECT id, sha256, created, client, label, status, model_version, predicted, probabilities,"
            f" claimed_digit FROM feedback{where} ORDER BY created DESC",
            values,
        ).fetchall()
        items = [self._item(r, bursts) for r in rows]
        items.sort(key=lambda it: not it["suspicious"])  # stable: newest first within each group
        page = items[offset : offset + limit]
        # The images of this page only: a queue of thousands need not read every blob to show a hundred.
        marks = ",".join("?" * len(page))
        images = dict(
            db.execute(f"SELECT id, input_png FROM feedback WHERE id IN ({marks})", [it["id"] for it in page])
        )
        for it in page:
            it["input_png"] = images[it["id"]]
        return total, page

    @staticmethod
    def _item(r: sqlite3.Row, bursts: set[str]) -> dict:
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
            "holdout": holdout(r["sha256"]), "suspicious": bool(reasons), "reasons": reasons,
        }  # fmt: skip

    def review(self, ids: list[str], action: str, label: int | None = None) -> int:
        """Accept, reject or relabel (and accept) items; returns how many there were."""
        marks = ",".join("?" * len(ids))
        db = self.store.connection()
        if action == "relabel":
            sql, values = f"UPDATE feedback SET label = ?, status = ? WHERE id IN ({marks})", [label, "accepted"]
        else:
            status = FeedbackStatus.ACCEPTED if action == "accept" else FeedbackStatus.REJECTED
            sql, values = f"UPDATE feedback SET status = ? WHERE id IN ({marks})", [status]
        return db.execute(sql, (*values, *ids)).rowcount

    def delete(self, item_id: str | None = None, client: str | None = None) -> int:
        column, value = ("id", item_id) if item_id is not None else ("client", client)
        return self.store.connection().execute(f"DELETE FROM feedback WHERE {column} = ?", (value,)).rowcount

    def _accepted_rows(self, columns: str, part: str | None) -> list[sqlite3.Row]:
        rows = (
            self.store.connection()
            .execute(
                f"SELECT sha256, {columns} FROM feedback WHERE status = ? ORDER BY sha256", (FeedbackStatus.ACCEPTED,)
            )
            .fetchall()
        )
        return rows if part is None else [r for r in rows if holdout(r["sha256"]) == (part == "holdout")]

    def accepted(self, part: str | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Accepted corrections as (x uint8 (n, 28, 28), labels (n,), sha256s); part "holdout" or "pool"
        for one side of the split."""
        rows = self._accepted_rows("label, input_png", part)
        x = np.stack([np.asarray(Image.open(io.BytesIO(r["input_png"])).convert("L")) for r in rows]) if rows else (
            np.zeros((0, SIDE, SIDE), np.uint8)
        )  # fmt: skip
        return x, np.array([r["label"] for r in rows], np.uint8), [r["sha256"] for r in rows]

    def checksum(self, part: str | None = None) -> str:
        """The accepted set's (or one part's) checksum, from the table alone: no image is read."""
        rows = self._accepted_rows("label", part)
        return checksum([r["sha256"] for r in rows], np.array([r["label"] for r in rows]))

    def export(self, file: IO[bytes]) -> int:
        """Write the accepted corrections as an .npz (fields in EXPORT_README); returns how many."""
        x, y, digests = self.accepted()
        in_holdout = np.array([holdout(d) for d in digests], bool)
        np.savez(
            file, x=x, y=y, sha256=np.array(digests, dtype="U64"), holdout=in_holdout, README=np.array(EXPORT_README)
        )
        return len(y)

    def import_items(
        self, x: np.ndarray, y: np.ndarray, digests: list[str] | None, status: FeedbackStatus, client: str
    ) -> int:
        """Corrections from an export file (already 28x28 inputs): stored once each, under the hash of
        the image first sent when the file has it, so that the holdout split stays the same."""
        db, added = self.store.connection(), 0
        for i, (image, label) in enumerate(zip(x, y, strict=True)):
            png = _png(image)
            digest = digests[i] if digests is not None else hashlib.sha256(png).hexdigest()
            cur = db.execute(
                "INSERT OR IGNORE INTO feedback (id, sha256, created, client, label, status, model_version,"
                " predicted, probabilities, media_type, original, input_png)"
                " VALUES (?, ?, ?, ?, ?, ?, '', ?, ?, 'image/png', ?, ?)",
                (uuid.uuid4().hex[:12], digest, time.time(), client, int(label), status, int(label),
                 json.dumps([float(d == label) for d in range(10)]), png, png),
            )  # fmt: skip
            added += cur.rowcount
        return added


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8), mode="L").save(buf, "PNG")
    return buf.getvalue()

"""Every version measured on real drawings: the accepted corrections' holdout, which grows over time.

A score belongs to one state of the holdout (its checksum: which images, with which labels), so a
version measured before more corrections were accepted shows no score for today's holdout until it
is measured again (one admin action for all versions), and the weights files stay immutable.
"""

from __future__ import annotations

import json
import time

import sqlalchemy as sa

from app.infra.db import holdout_scores
from app.services.feedback_review import Review, labelled_checksum
from app.services.feedback_store import FeedbackStore
from model.data import Dataset
from model.evaluation import evaluate
from model.predictor import Predictor
from model.spec import N_PIXELS


class HoldoutScores:
    def __init__(self, store: FeedbackStore) -> None:
        self.store = store

    def current(self) -> tuple[Dataset, str]:
        """Today's holdout (x uint8 (n, 784)) and its checksum."""
        x, y, digests = Review(self.store).accepted("holdout")
        return Dataset(x.reshape(len(x), N_PIXELS), y), labelled_checksum(digests, y)

    def evaluate(self, version: str, predictor: Predictor, holdout: tuple[Dataset, str] | None = None) -> dict | None:
        """Measure a version on today's holdout and keep the score; None while the holdout is empty."""
        data, checksum = holdout or self.current()
        if not len(data):
            return None
        ev = evaluate(predictor.network, data)
        db = self.store.db
        row = {"version": version, "checksum": checksum, "n": ev.n, "accuracy": ev.accuracy,
               "per_class": json.dumps(ev.per_class), "evaluated": time.time()}  # fmt: skip
        with db.write() as conn:
            conn.execute(db.upsert(holdout_scores, ["version", "checksum"], row))
        return self.score(version, checksum)

    def current_checksum(self) -> str:
        """Today's holdout's checksum, without reading its images."""
        return Review(self.store).checksum_of("holdout")

    def score(self, version: str, checksum: str | None = None) -> dict | None:
        """A version's score on today's holdout (or the one with `checksum`), if it was measured on it."""
        checksum = checksum or self.current_checksum()
        t = holdout_scores.c
        query = sa.select(t.n, t.accuracy, t.per_class, t.evaluated).where(t.version == version, t.checksum == checksum)
        with self.store.db.read() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        return {"n": row.n, "accuracy": row.accuracy, "per_class": json.loads(row.per_class),
                "checksum": checksum, "evaluated": row.evaluated}  # fmt: skip

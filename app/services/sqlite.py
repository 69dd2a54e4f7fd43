"""The runtime folder's SQLite database, as every store here opens it: WAL, one connection per thread.

WAL lets readers and the one writer work at once (web workers, the training process). A connection per
thread, kept: the training process asks for its cancel flag before every step, and opening a
connection each time would cost more than the question.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class Database:
    def __init__(self, path: Path, schema: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        db = self.connection()
        db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer, nor it them
        db.executescript(schema)

    def connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

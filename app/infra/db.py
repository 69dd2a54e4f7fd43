"""The shared database: one SQLAlchemy Core schema for the embedded SQLite file and for PostgreSQL.

`DIGITS_DATABASE_URL` unset: `<runtime_dir>/jobs.sqlite` (WAL), for one host. `postgresql://...`: the
state every replica and training worker on any host shares. The stores speak Core expressions, so one
code path serves both; the few statements that differ (insert-or-ignore, the write lock) differ here.
The schema belongs to the Alembic migrations in `app/migrations`, run at start-up or by `digits db upgrade`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger("digits.db")
# What a database that cannot be reached (or answered an error) raises, whichever driver.
DB_ERRORS = (sa.exc.DBAPIError, sa.exc.TimeoutError)
SQLITE_WAIT_S = 10  # how long a SQLite writer waits for another's lock


class Busy(Exception):
    """Another writer holds the lock that a write which would not wait asked for."""


def error_reason(e: BaseException) -> str:
    """The driver's own first line (e.g. "connection refused"), without SQLAlchemy's wrapping."""
    return (str(getattr(e, "orig", None) or e).strip().splitlines() or [type(e).__name__])[0]


class JobStatus(StrEnum):
    """A training job's status: the one list (the admin page's badges are named after these)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
metadata = sa.MetaData()

jobs = sa.Table(
    "jobs", metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("preset", sa.Text, nullable=False),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("activate", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("started", sa.Float),
    sa.Column("finished", sa.Float),
    sa.Column("pid", sa.Integer),
    sa.Column("cancel_requested", sa.Integer, nullable=False, server_default="0"),
    sa.Column("progress", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("version", sa.Text),
    sa.Column("promoted", sa.Integer),
    sa.Column("result", sa.Text),
    sa.Column("worker", sa.Text),  # which `digits worker` claimed it (host:pid), if a worker did
    sa.Column("heartbeat", sa.Float),  # that worker's last sign of life
)  # fmt: skip
# At most one job queued or running, enforced by the database itself: two web processes or replicas
# accepting POST /train at the same instant cannot both win (JobStore.create relies on it).
_active = jobs.c.status.in_([s.value for s in ACTIVE])
sa.Index("one_active_job", _active, unique=True, sqlite_where=_active, postgresql_where=_active)

progress = sa.Table(
    "progress", metadata,
    sa.Column("job_id", sa.Text, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("data", sa.Text, nullable=False),
)  # fmt: skip

feedback = sa.Table(
    "feedback", metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("sha256", sa.Text, nullable=False, unique=True),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("client", sa.Text, nullable=False),
    sa.Column("label", sa.Integer, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("predicted", sa.Integer, nullable=False),
    sa.Column("probabilities", sa.Text, nullable=False),
    sa.Column("confidence", sa.Float, nullable=False, server_default="0"),  # probabilities[predicted] (0004)
    sa.Column("claimed_version", sa.Text),
    sa.Column("claimed_digit", sa.Integer),
    sa.Column("media_type", sa.Text, nullable=False),
    sa.Column("bytes", sa.Integer, nullable=False, server_default="0"),
    sa.Column("original", sa.LargeBinary, nullable=False),
    sa.Column("input_png", sa.LargeBinary, nullable=False),
)  # fmt: skip
sa.Index("feedback_by_client", feedback.c.client, feedback.c.status)  # each client's quota (migration 0003)
# The review queue, newest first, read from the index alone (0004); it also finds the recent items.
QUEUE_COLUMNS = ("created", "id", "status", "label", "predicted", "confidence", "client")
sa.Index("feedback_queue", *(feedback.c[k] for k in QUEUE_COLUMNS))
sa.Index("feedback_bytes", feedback.c.bytes)  # the store's size, summed at every correction (0004)

holdout_scores = sa.Table(
    "holdout_scores", metadata,
    sa.Column("version", sa.Text, primary_key=True),
    sa.Column("checksum", sa.Text, primary_key=True),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("accuracy", sa.Float, nullable=False),
    sa.Column("per_class", sa.Text, nullable=False),
    sa.Column("evaluated", sa.Float, nullable=False),
)  # fmt: skip

# The model registry when it lives in the database (PostgreSQL): the weights files themselves, and
# which one is served. On SQLite the registry stays in the runtime folder (app.services.registry).
model_versions = sa.Table(
    "model_versions", metadata,
    sa.Column("version", sa.Text, primary_key=True),
    sa.Column("sha256", sa.Text, nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
)  # fmt: skip

active_model = sa.Table(
    "active_model", metadata,
    sa.Column("id", sa.Integer, primary_key=True),  # always 1: one row
    sa.Column("version", sa.Text, nullable=False),
    sa.Column("changed", sa.Float, nullable=False),
)  # fmt: skip

shared_secrets = sa.Table(
    "shared_secrets", metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("value", sa.LargeBinary, nullable=False),
)  # fmt: skip

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        Path(sa.make_url(url).database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_WAIT_S, "check_same_thread": False})

        # SQLAlchemy's documented recipe for real SQLite transactions: the driver's own BEGIN handling
        # off, our BEGIN on. A connection opened with execution option `immediate` takes the write
        # lock at BEGIN, so a read-then-write transaction cannot lose its snapshot to another writer.
        @event.listens_for(engine, "connect")
        def _connect(dbapi, record):
            dbapi.isolation_level = None
            dbapi.execute("PRAGMA journal_mode=WAL")  # readers never block the writer, nor it them

        @event.listens_for(engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("immediate") else "BEGIN")

        return engine
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    # pre_ping: a pooled connection that died with a database restart is replaced, not handed out.
    # connect_timeout: while the database is away, admin requests answer 503 in seconds, not minutes.
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args={"connect_timeout": 3})


class Db:
    """One database, as every store here uses it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _engine(url)
        self.is_postgres = self.engine.dialect.name == "postgresql"
        self.migrated = False

    def read(self) -> contextlib.AbstractContextManager[Connection]:
        return self.engine.connect()

    @contextlib.contextmanager
    def write(self, lock: str | None = None, wait: bool = True) -> Iterator[Connection]:
        """A transaction. With `lock`, writers that name the same lock run one at a time (for a
        check-then-insert): SQLite's write lock at BEGIN, a transaction-scoped advisory lock on Postgres.
        `wait=False` (SQLite only, with a lock): raise Busy at once rather than wait for another writer."""
        if lock is not None and not self.is_postgres:
            with self.engine.connect().execution_options(immediate=True) as conn:
                sqlite = conn.connection.driver_connection  # not through SQLAlchemy, which would BEGIN first
                if not wait:
                    sqlite.execute("PRAGMA busy_timeout = 0")
                try:
                    with conn.begin():
                        yield conn
                except sa.exc.OperationalError as e:
                    if not wait and "locked" in str(e.orig):
                        raise Busy(str(e.orig)) from None
                    raise
                finally:
                    if not wait:
                        sqlite.execute(f"PRAGMA busy_timeout = {SQLITE_WAIT_S * 1000}")
            return
        if not wait:
            raise ValueError("only a SQLite write with a lock can be asked not to wait")
        with self.engine.begin() as conn:
            if lock is not None:
                _advisory_lock(conn, lock)
            yield conn

    def _insert(self, table: sa.Table) -> sa.Insert:
        return (postgresql.insert if self.is_postgres else sqlite.insert)(table)

    def insert_ignoring_duplicates(self, table: sa.Table) -> sa.Insert:
        """INSERT ... ON CONFLICT DO NOTHING RETURNING the key, in this database's words: the result has a
        row when one was inserted (psycopg reports no rowcount for an INSERT)."""
        return self._insert(table).on_conflict_do_nothing().returning(*table.primary_key.columns)

    def upsert(self, table: sa.Table, keys: list[str], values: dict) -> sa.Insert:
        ins = self._insert(table).values(**values)
        return ins.on_conflict_do_update(index_elements=keys, set_={k: v for k, v in values.items() if k not in keys})

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to the newest migration (idempotent; safe when several processes start at once)."""
        from alembic import command
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        if revision == "head" and self.revision() == ScriptDirectory.from_config(cfg).get_current_head():
            self.migrated = True  # the usual start: nothing to take a lock for (the folder may be read-only)
            return
        with self._migration_lock(), self.engine.begin() as conn:
            if self.is_postgres:
                _advisory_lock(conn, "digits-migrations")
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
        self.migrated = revision == "head"

    def try_upgrade(self) -> bool:
        """Upgrade if the database can be reached; PostgreSQL may be away when a replica starts."""
        try:
            self.upgrade()
        except DB_ERRORS as e:
            if not self.is_postgres:
                raise  # a local file that cannot be opened is not an outage to wait out
            log.warning("database unreachable; will retry", extra={"error": error_reason(e)})
        return self.migrated

    def revision(self) -> str | None:
        with self.read() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        if self.is_postgres:
            yield  # the advisory lock inside the transaction does it
            return
        lock_path = Path(sa.make_url(self.url).database).with_suffix(".migrate.lock")
        with open(lock_path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # several web workers start at once
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def _advisory_lock(conn: Connection, name: str) -> None:
    """PostgreSQL: wait for, then hold until the transaction ends, the lock called `name`."""
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(name))))


_open: dict[str, Db] = {}
_open_lock = threading.Lock()


def open_db(where: str | Path) -> Db:
    """The process's one Db (and so one connection pool) for a URL or a SQLite file, migrated to the
    newest schema when it can be reached (see `Db.try_upgrade`)."""
    url = sqlite_url(where) if isinstance(where, Path) else where
    with _open_lock:
        db = _open.get(url)
        if db is None:
            db = Db(url)
            _open[url] = db
        if not db.migrated:
            db.try_upgrade()
        return db


def shared_secret(db: Db, name: str, initial: bytes) -> tuple[bytes, bool]:
    """A secret made once per database and the same for every process that uses it: `initial` if this
    call is the first to ask (then also True), else the one stored by the first. Read first, so that a
    read-only database still answers once the secret exists."""
    query = sa.select(shared_secrets.c.value).where(shared_secrets.c.name == name)
    with db.read() as conn:
        stored = conn.execute(query).scalar()
    if stored is not None:
        return stored, False
    with db.write() as conn:
        made = conn.execute(db.insert_ignoring_duplicates(shared_secrets).values(name=name, value=initial)).first()
        return conn.execute(query).scalar_one(), made is not None

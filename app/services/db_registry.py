"""The model registry in the shared database (PostgreSQL), for several replicas on several hosts.

    model_versions   each version's weights file, whole, with its SHA-256 (immutable once written)
    active_model     one row: the version every replica serves

Each replica keeps a local cache of the files it has used, `<runtime_dir>/cache/<sha256>.npz`, keyed by
content: a file is fetched once, checked against its hash, and then read like any registry file, so the
validation, the card cache and the holder's reload logic are the file registry's own. The replica also
remembers the version it last served (`<runtime_dir>/cache/served`), so that one that starts while
the database is away still serves.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from app.infra.db import DB_ERRORS, Db, active_model, error_reason, model_versions
from app.services.registry import (
    DEFAULT_VERSION,
    INITIAL_VERSION,
    VERSION_RE,
    InvalidVersion,
    JobLost,
    LoadedModel,
    Registry,
    RegistryUnavailable,
    UnknownVersion,
    atomic_write_text,
)
from model import weights
from model.files import atomic_file
from model.predictor import Predictor

log = logging.getLogger("digits.registry")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class DbRegistry(Registry):
    def __init__(self, db: Db, runtime_dir: Path, seed_dir: Path | None = None, initial: str = INITIAL_VERSION) -> None:
        super().__init__(runtime_dir, seed_dir, initial)
        self.db = db
        self.cache = self.root / "cache"
        self.served = self.cache / "served"
        self.cache.mkdir(parents=True, exist_ok=True)
        self._hashes: dict[str, str] = {}  # version -> sha256: versions never change, so never expires

    def _rows(self, query: sa.Select) -> list[sa.Row]:
        try:
            with self.db.read() as conn:
                return conn.execute(query).all()
        except DB_ERRORS as e:
            raise RegistryUnavailable(error_reason(e)) from e

    def _scalar(self, query: sa.Select):
        rows = self._rows(query)
        return rows[0][0] if rows else None

    def _scalars(self, query: sa.Select) -> list:
        return [r[0] for r in self._rows(query)]

    # ---- setup -------------------------------------------------------------------------------

    def ensure(self) -> None:
        """Put the committed weights in the database (the first replica to start wins; each later one
        adds only what is missing) and point at the initial version if nothing is active yet."""
        if self.seed_dir is not None and self.seed_dir.is_dir():
            known = set(self.versions())
            for src in sorted(self.seed_dir.glob("*.npz")):
                if src.stem not in known and VERSION_RE.match(src.stem):
                    self._insert(src.stem, src.read_bytes())
        with self.db.write() as conn:
            if conn.execute(sa.select(active_model.c.version)).first() is None:
                names = set(conn.execute(sa.select(model_versions.c.version)).scalars())
                first = next((v for v in (self.initial, DEFAULT_VERSION) if v in names), None)
                if first is not None:
                    row = {"id": 1, "version": first, "changed": time.time()}
                    conn.execute(self.db.insert_ignoring_duplicates(active_model).values(**row))

    def _insert(self, version: str, data: bytes, conn: sa.Connection | None = None) -> bool:
        row = {"version": version, "sha256": _sha256(data), "size": len(data), "data": data, "created": time.time()}
        query = self.db.insert_ignoring_duplicates(model_versions).values(**row)
        if conn is not None:
            return conn.execute(query).first() is not None
        with self.db.write() as c:
            return c.execute(query).first() is not None

    # ---- queries -----------------------------------------------------------------------------

    def path(self, version: str) -> Path:
        """The version's file in the local cache, fetched from the database the first time."""
        if not VERSION_RE.match(version):
            raise InvalidVersion(f"invalid version name {version!r}")
        sha = self._hashes.get(version)
        if sha is None:
            sha = self._scalar(sa.select(model_versions.c.sha256).where(model_versions.c.version == version))
            if sha is None:
                raise UnknownVersion(version)
            self._hashes[version] = sha
        path = self.cache / f"{sha}.npz"
        if not path.exists():
            data = self._scalar(sa.select(model_versions.c.data).where(model_versions.c.sha256 == sha).limit(1))
            if data is None or _sha256(data) != sha:
                raise weights.WeightsError(f"version {version!r}: the stored file does not match its hash")
            with atomic_file(path) as f:
                f.write(data)
        return path

    def active_version(self) -> str | None:
        return self._scalar(sa.select(active_model.c.version))

    def versions(self) -> list[str]:
        return sorted(self._scalars(sa.select(model_versions.c.version)))

    def versions_by_age(self) -> list[str]:
        return self._scalars(sa.select(model_versions.c.version).order_by(model_versions.c.created.desc()))

    def last_served(self) -> str | None:
        """The version this replica served last (for a start while the database is away)."""
        try:
            version, sha = self.served.read_text().split()
        except (FileNotFoundError, ValueError):
            return None
        if (self.cache / f"{sha}.npz").exists():
            self._hashes.setdefault(version, sha)
            return version
        return None

    def remember_served(self, version: str) -> None:
        sha = self._hashes.get(version)
        if sha is not None:
            atomic_write_text(self.served, f"{version} {sha}\n")

    # ---- changes -----------------------------------------------------------------------------

    def activate(self, version: str) -> LoadedModel:
        loaded = self.load(version)  # validated from the cache before any replica is told
        row = {"id": 1, "version": version, "changed": time.time()}
        with self.db.write() as conn:
            conn.execute(self.db.upsert(active_model, ["id"], row))
        log.info("activated model version", extra={"version": version})
        return loaded

    def register(
        self, predictor: Predictor, version: str, guard: Callable[[sa.Connection], bool] | None = None
    ) -> Path:
        """Store a new version. `guard`, run in the same transaction, may refuse (a training worker that
        has lost its job must not register what it made): then nothing is stored."""
        if not VERSION_RE.match(version):
            raise InvalidVersion(f"invalid version name {version!r}")
        with tempfile.TemporaryDirectory(dir=self.cache) as tmp:
            saved = weights.save(Path(tmp) / f"{version}.npz", predictor.network, predictor.card, predictor.detector)
            data = saved.read_bytes()
            with self.db.write() as conn:
                if guard is not None and not guard(conn):
                    raise JobLost(f"version {version!r} not registered: the job is no longer this worker's")
                if not self._insert(version, data, conn):
                    raise InvalidVersion(f"version {version!r} exists already")
            sha = self._hashes[version] = _sha256(data)
            return saved.replace(self.cache / f"{sha}.npz")  # into the cache as it is: no fetching it back


def open_registry(db: Db, runtime_dir: Path, seed_dir: Path | None, initial: str) -> Registry:
    """The registry that goes with the database: in it on PostgreSQL, in the runtime folder on SQLite."""
    if db.is_postgres:
        return DbRegistry(db, runtime_dir, seed_dir, initial)
    return Registry(runtime_dir, seed_dir, initial)

"""The model registry: every version's weights file, and which one is served, in the database.

    model_versions   each version's .npz, whole, with its SHA-256 (immutable once written)
    active_model     one row: the version every web process serves

The database is the one home of shared state on both backends: the runtime folder's SQLite file on
one host, PostgreSQL for several. Each process keeps the files it has used in a local cache,
`<runtime_dir>/cache/<sha256>.npz`, keyed by content: a file is fetched once, checked against its
hash, then read like any weights file. It also remembers the version it served last
(`<runtime_dir>/cache/served`), so a process that starts while PostgreSQL is away still serves.

The committed `weights/*.npz` seed the registry on first start and are never modified; the files and
pointer of an install from before (`<runtime_dir>/models/`, `<runtime_dir>/active`) are imported
once. Every web process polls the active row (app.services.model_holder), so activation reaches all
of them without a restart. Which new version becomes active is decided here too (`promotion`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from app.infra.db import DB_ERRORS, Db, active_model, error_reason, model_versions
from model import weights
from model.card import ModelCard
from model.files import atomic_file
from model.paths import INITIAL_VERSION
from model.predictor import Predictor
from model.spec import NORMALISATION

log = logging.getLogger("digits.registry")

VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEFAULT_VERSION = "default"  # served when the committed weights have no INITIAL_VERSION file


class UnknownVersion(LookupError):
    pass


class InvalidVersion(ValueError):
    pass


class RegistryUnavailable(Exception):
    """The registry's store (the shared database) cannot be reached right now."""


class JobLost(Exception):
    """A worker's job was given up on (no heartbeat) or finished elsewhere while it trained."""


class IncompatibleModel(ValueError):
    """A readable model that expects other input than this server makes."""


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_file(path, "w") as f:
        f.write(text)


def check_version(version: str) -> str:
    """The version name, if it is one (the one rule for names: they are file names and URL segments)."""
    if not VERSION_RE.match(version):
        raise InvalidVersion(f"invalid version name {version!r}")
    return version


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_input(card: ModelCard) -> None:
    """A model is served only if it expects the input this server makes."""
    expected = card.input_normalisation.preprocess if card.input_normalisation else None
    if expected != NORMALISATION:
        raise IncompatibleModel(f"model expects input preprocessing {expected!r}, this server makes {NORMALISATION!r}")


@dataclass(frozen=True)
class LoadedModel:
    version: str
    predictor: Predictor

    @property
    def card(self) -> ModelCard:
        return self.predictor.card


MNIST_TOLERANCE = 0.001  # a new version may be this much worse on MNIST's test set (0.1 point)...
MIN_HOLDOUT = 50  # ...if it is no worse on the real-drawing holdout, once the holdout has this many


@dataclass(frozen=True)
class Promotion:
    promote: bool
    compared_with: str | None  # the version active when the decision was made
    compared_accuracy: float | None
    holdout: dict[str, float | int] | None = None  # {"n", "candidate", "active"} when the holdout counted


def promotion(
    candidate: ModelCard,
    active: str | None,
    active_card: ModelCard | None,
    mode: str,
    holdout: tuple[int, float, float] | None = None,
) -> Promotion:
    """The promotion policy: "always", or "if_better": not worse than the active version on MNIST's
    test set by more than 0.1 point, and not worse on the real-drawing holdout (n, candidate accuracy,
    active accuracy) once it holds MIN_HOLDOUT drawings. No active version, or one that does not say
    its accuracy, is no bar."""
    active_acc = active_card.test_accuracy if active_card else None
    new_acc = candidate.test_accuracy
    mnist_ok = active_acc is None or (new_acc is not None and new_acc >= active_acc - MNIST_TOLERANCE)
    counts = holdout is not None and holdout[0] >= MIN_HOLDOUT
    holdout_ok = not counts or holdout[1] >= holdout[2]
    record = {"n": holdout[0], "candidate": holdout[1], "active": holdout[2]} if counts else None
    return Promotion(mode == "always" or (mnist_ok and holdout_ok), active, active_acc, record)


class Registry:
    def __init__(self, db: Db, runtime_dir: Path, seed_dir: Path | None = None, initial: str = INITIAL_VERSION) -> None:
        self.db, self.initial, self.seed_dir = db, initial, seed_dir
        self.root = Path(runtime_dir)
        self.cache = self.root / "cache"
        self.served = self.cache / "served"
        self._hashes: dict[str, str] = {}  # version -> sha256: versions never change, so never expires
        self._cards: dict[str, ModelCard] = {}  # by sha256, for the same reason

    def _rows(self, query: sa.Select) -> list[sa.Row]:
        try:
            with self.db.read() as conn:
                return conn.execute(query).all()
        except DB_ERRORS as e:
            raise RegistryUnavailable(error_reason(e)) from e

    def _scalar(self, query: sa.Select):
        rows = self._rows(query)
        return rows[0][0] if rows else None

    # ---- setup -------------------------------------------------------------------------------

    def ensure(self) -> None:
        """Import what an install from before kept in files, add the committed weights that are missing
        (the first process to start wins; each later one adds only what is missing), and point at the
        initial version (or 'default') if nothing is active yet."""
        self.cache.mkdir(parents=True, exist_ok=True)
        self._import_folder(self.root / "models", warn=False)
        pointer = self.root / "active"
        legacy = pointer.read_text().strip() if pointer.exists() else ""
        if VERSION_RE.match(legacy):
            self._point_at(legacy, only_if_unset=True)
        if self.seed_dir is not None and self.seed_dir.is_dir():
            self._import_folder(self.seed_dir, warn=True)
        names = set(self.versions())
        first = next((v for v in (self.initial, DEFAULT_VERSION) if v in names), None)
        if first is not None:
            self._point_at(first, only_if_unset=True)

    def _import_folder(self, folder: Path, warn: bool) -> None:
        if not folder.is_dir():
            return
        known = {v: self._hash(v) for v in self.versions()}
        for src in sorted(folder.glob("*.npz")):
            if not VERSION_RE.match(src.stem):
                continue
            data = src.read_bytes()
            if src.stem not in known:
                self.add(src.stem, data)
            elif warn and known[src.stem] != _sha256(data):
                # Versions are immutable, so newer committed weights do not replace a registered
                # version of the same name; say so rather than serve stale weights silently.
                log.warning(
                    "committed weights differ from the registered version of the same name; register them "
                    "under another name to serve them",
                    extra={"committed": str(src), "version": src.stem},
                )

    def add(self, version: str, data: bytes, conn: sa.Connection | None = None) -> bool:
        """Store a weights file as it is (validated when loaded); False if the version exists already."""
        row = {"version": check_version(version), "sha256": _sha256(data), "size": len(data), "data": data,
               "created": time.time()}  # fmt: skip
        query = self.db.insert_ignoring_duplicates(model_versions).values(**row)
        if conn is not None:
            return conn.execute(query).first() is not None
        with self.db.write() as c:
            return c.execute(query).first() is not None

    def _point_at(self, version: str, only_if_unset: bool = False) -> None:
        row = {"id": 1, "version": version, "changed": time.time()}
        with self.db.write() as conn:
            if only_if_unset:
                conn.execute(self.db.insert_ignoring_duplicates(active_model).values(**row))
            else:
                conn.execute(self.db.upsert(active_model, ["id"], row))

    # ---- queries -----------------------------------------------------------------------------

    def _hash(self, version: str) -> str:
        sha = self._hashes.get(check_version(version))
        if sha is None:
            sha = self._scalar(sa.select(model_versions.c.sha256).where(model_versions.c.version == version))
            if sha is None:
                raise UnknownVersion(version)
            self._hashes[version] = sha
        return sha

    def path(self, version: str) -> Path:
        """The version's file in the local cache, fetched from the database the first time."""
        sha = self._hash(version)
        path = self.cache / f"{sha}.npz"
        if not path.exists():
            data = self._stored(version, sha)
            self.cache.mkdir(parents=True, exist_ok=True)
            with atomic_file(path) as f:
                f.write(data)
        return path

    def _stored(self, version: str, sha: str) -> bytes:
        data = self._scalar(sa.select(model_versions.c.data).where(model_versions.c.sha256 == sha).limit(1))
        if data is None or _sha256(data) != sha:
            raise weights.WeightsError(f"version {version!r}: the stored file does not match its hash")
        return data

    def active_version(self) -> str | None:
        return self._scalar(sa.select(active_model.c.version))

    def versions(self) -> list[str]:
        return sorted(r[0] for r in self._rows(sa.select(model_versions.c.version)))

    def versions_by_age(self) -> list[str]:
        """Newest first."""
        query = sa.select(model_versions.c.version).order_by(model_versions.c.created.desc())
        return [r[0] for r in self._rows(query)]

    def last_served(self) -> str | None:
        """The version this process's host served last (for a start while the database is away)."""
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
            with contextlib.suppress(OSError):  # best effort: a read-only runtime folder still serves
                atomic_write_text(self.served, f"{version} {sha}\n")

    def card(self, version: str) -> ModelCard:
        """The version's card; raises WeightsError for a file it cannot read."""
        sha = self._hash(version)
        if sha not in self._cards:
            try:
                source: Path | io.BytesIO = self.path(version)
            except OSError:  # a full or read-only cache: read the card from the stored bytes, cache nothing
                source = io.BytesIO(self._stored(version, sha))
            self._cards[sha] = weights.read_card(source, f"version {version!r}")
        return self._cards[sha]

    def load(self, version: str) -> LoadedModel:
        """The whole version, validated; raises WeightsError or IncompatibleModel."""
        predictor = weights.load_predictor(self.path(version), f"version {version!r}")
        check_input(predictor.card)
        return LoadedModel(version, predictor)

    def promotion(
        self, candidate: ModelCard, mode: str, holdout_accuracy: Callable[[str], tuple[int, float, float] | None]
    ) -> Promotion:
        """Decide on `candidate` against the active version; holdout_accuracy(active) gives (n, candidate's
        accuracy, active's accuracy) on the real-drawing holdout, or None without one."""
        active = self.active_version()
        active_card = holdout = None
        if active is not None:
            try:
                active_card = self.card(active)
                holdout = holdout_accuracy(active)
            except (UnknownVersion, InvalidVersion, weights.WeightsError, IncompatibleModel):
                active_card = None  # a broken active version is no bar to a working one
        return promotion(candidate, active, active_card, mode, holdout)

    # ---- changes -----------------------------------------------------------------------------

    def activate(self, version: str) -> LoadedModel:
        """Validate the version fully, then make it the active one. A bad file never becomes active."""
        loaded = self.load(version)  # validated from the cache before any process is told
        self._point_at(version)
        log.info("activated model version", extra={"version": version})
        return loaded

    def register(
        self, predictor: Predictor, version: str, guard: Callable[[sa.Connection], bool] | None = None
    ) -> Path:
        """Store a new version, whole or not at all. `guard`, run in the same transaction, may refuse (a
        training worker that has lost its job must not register what it made): then nothing is stored."""
        check_version(version)
        self.cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.cache) as tmp:
            saved = weights.save(Path(tmp) / f"{version}.npz", predictor.network, predictor.card, predictor.detector)
            data = saved.read_bytes()
            with self.db.write() as conn:
                if guard is not None and not guard(conn):
                    raise JobLost(f"version {version!r} not registered: the job is no longer this worker's")
                if not self.add(version, data, conn):
                    raise InvalidVersion(f"version {version!r} exists already")
            sha = self._hashes[version] = _sha256(data)
            return saved.replace(self.cache / f"{sha}.npz")  # into the cache as it is: no fetching it back

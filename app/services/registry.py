"""The model registry: versioned weights in the runtime folder and an atomically switched pointer.

    var/models/<version>.npz   immutable once written
    var/active                 the active version's name (replaced by rename, never edited)

The committed `weights/*.npz` seed the registry on first start and are never modified. Every web
worker watches the pointer (see `app.services.model_holder`), so activation reaches all of them
without a restart. Which new version becomes active is decided here too (`promotion`).
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def atomic_copy(src: Path, dst: Path) -> None:
    with atomic_file(dst) as out, open(src, "rb") as inp:
        shutil.copyfileobj(inp, out)


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
    def __init__(self, runtime_dir: Path, seed_dir: Path | None = None, initial: str = INITIAL_VERSION) -> None:
        self.root = Path(runtime_dir)
        self.initial = initial
        self.models = self.root / "models"
        self.pointer = self.root / "active"
        self.seed_dir = seed_dir
        self._cards: dict[str, tuple[float, ModelCard]] = {}

    # ---- setup -------------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the folders; copy in the committed weights and point at the initial version (or
        'default') on first start."""
        self.models.mkdir(parents=True, exist_ok=True)
        if self.seed_dir is not None and self.seed_dir.is_dir():
            for src in sorted(self.seed_dir.glob("*.npz")):
                dst = self.models / src.name
                if not dst.exists():
                    atomic_copy(src, dst)  # several workers may race here; each rename is whole
                elif dst.stat().st_size != src.stat().st_size or dst.read_bytes() != src.read_bytes():
                    # Versions are immutable, so newer committed weights do not replace a registered
                    # version of the same name; say so rather than serve stale weights silently.
                    log.warning(
                        "committed weights differ from the registered version of the same name; delete the "
                        "registered file to take the committed one",
                        extra={"committed": str(src), "registered": str(dst)},
                    )
        if not self.pointer.exists():
            first = next((v for v in (self.initial, DEFAULT_VERSION) if self.path(v).exists()), None)
            if first is not None:
                atomic_write_text(self.pointer, first + "\n")

    # ---- queries -----------------------------------------------------------------------------

    def path(self, version: str) -> Path:
        if not VERSION_RE.match(version):
            raise InvalidVersion(f"invalid version name {version!r}")
        return self.models / f"{version}.npz"

    def active_version(self) -> str | None:
        try:
            return self.pointer.read_text().strip() or None
        except FileNotFoundError:
            return None

    def versions(self) -> list[str]:
        return sorted(p.stem for p in self.models.glob("*.npz") if VERSION_RE.match(p.stem))

    def versions_by_age(self) -> list[str]:
        """Newest first."""
        return sorted(self.versions(), key=lambda v: self.path(v).stat().st_mtime, reverse=True)

    def last_served(self) -> str | None:
        """Only a registry kept elsewhere (the database) needs to remember this locally."""
        return None

    def remember_served(self, version: str) -> None:
        pass

    def card(self, version: str) -> ModelCard:
        """The version's card (cached by mtime); raises WeightsError for a file it cannot read."""
        path = self.path(version)
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            raise UnknownVersion(version) from None
        cached = self._cards.get(version)
        if cached and cached[0] == mtime:
            return cached[1]
        card = weights.read_card(path, f"version {version!r}")
        self._cards[version] = (mtime, card)
        return card

    def load(self, version: str) -> LoadedModel:
        """The whole version, validated; raises WeightsError or IncompatibleModel."""
        path = self.path(version)
        if not path.exists():
            raise UnknownVersion(version)
        predictor = weights.load_predictor(path, f"version {version!r}")
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
            except (UnknownVersion, weights.WeightsError, IncompatibleModel):
                active_card = None  # a broken active version is no bar to a working one
        return promotion(candidate, active, active_card, mode, holdout)

    # ---- changes -----------------------------------------------------------------------------

    def activate(self, version: str) -> LoadedModel:
        """Validate the version fully, then switch the pointer. A bad file never becomes active."""
        loaded = self.load(version)
        atomic_write_text(self.pointer, version + "\n")
        log.info("activated model version", extra={"version": version})
        return loaded

    def register(self, predictor: Predictor, version: str, guard: Callable[[Any], bool] | None = None) -> Path:
        """Store a new version. `guard(None)` may refuse (a worker whose job was given up on)."""
        path = self.path(version)
        if path.exists():
            raise InvalidVersion(f"version {version!r} exists already")
        if guard is not None and not guard(None):
            raise JobLost(f"version {version!r} not registered: the job is no longer this worker's")
        return weights.save(path, predictor.network, predictor.card, predictor.detector)

"""The model registry: versioned weights in the runtime folder and an atomically switched pointer.

    var/models/<version>.npz   immutable once written
    var/active                 the active version's name (replaced by rename, never edited)

The committed `weights/*.npz` seed the registry on first start and are never modified. Every web
worker watches the pointer (see `app.serving`), so activation reaches all of them without a restart.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model import weights
from model.files import atomic_file
from model.images import PIPELINE
from model.network import Network

log = logging.getLogger("digits.registry")

VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEFAULT_VERSION = "default"


class UnknownVersion(LookupError):
    pass


class InvalidVersion(ValueError):
    pass


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_file(path, "w") as f:
        f.write(text)


def atomic_copy(src: Path, dst: Path) -> None:
    with atomic_file(dst) as out, open(src, "rb") as inp:
        shutil.copyfileobj(inp, out)


def check_servable(meta: dict[str, Any]) -> None:
    """A model is served only if it expects the input this server makes."""
    expected = (meta.get("input_normalisation") or {}).get("preprocess")
    if expected != PIPELINE:
        raise weights.WeightsError(f"model expects input preprocessing {expected!r}, this server makes {PIPELINE!r}")


@dataclass(frozen=True)
class LoadedModel:
    version: str
    network: Network
    metadata: dict[str, Any]


class Registry:
    def __init__(self, runtime_dir: Path, seed_dir: Path | None = None) -> None:
        self.root = Path(runtime_dir)
        self.models = self.root / "models"
        self.pointer = self.root / "active"
        self.seed_dir = seed_dir
        self._meta_cache: dict[str, tuple[float, dict[str, Any]]] = {}

    # ---- setup -------------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the folders; copy in the committed weights and point at 'default' on first start."""
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
        if not self.pointer.exists() and self.path(DEFAULT_VERSION).exists():
            atomic_write_text(self.pointer, DEFAULT_VERSION + "\n")

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

    def metadata(self, version: str) -> dict[str, Any]:
        """The metadata entry alone (cached by mtime): listing versions never loads the arrays."""
        path = self.path(version)
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            raise UnknownVersion(version) from None
        cached = self._meta_cache.get(version)
        if cached and cached[0] == mtime:
            return cached[1]
        try:
            with np.load(path, allow_pickle=False) as npz:
                meta = json.loads(str(npz[weights.METADATA_KEY][()]))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
            meta = {"error": f"unreadable: {e}"}
        self._meta_cache[version] = (mtime, meta)
        return meta

    def load(self, version: str) -> LoadedModel:
        path = self.path(version)
        if not path.exists():
            raise UnknownVersion(version)
        net, meta = weights.load(path)  # raises WeightsError
        check_servable(meta)
        return LoadedModel(version, net, meta)

    # ---- changes -----------------------------------------------------------------------------

    def activate(self, version: str) -> LoadedModel:
        """Validate the version fully, then switch the pointer. A bad file never becomes active."""
        loaded = self.load(version)
        atomic_write_text(self.pointer, version + "\n")
        log.info("activated model version", extra={"version": version})
        return loaded

    def register(self, network: Network, metadata: dict[str, Any], version: str) -> Path:
        path = self.path(version)
        if path.exists():
            raise InvalidVersion(f"version {version!r} exists already")
        return weights.save(path, network, metadata)

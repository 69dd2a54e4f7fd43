"""The active model of one web worker, and the watcher that follows the registry's pointer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from app.services.registry import IncompatibleModel, LoadedModel, Registry, RegistryUnavailable, UnknownVersion
from model.weights import WeightsError

log = logging.getLogger("digits.serving")


class ModelHolder:
    """Holds the model this worker serves. Swapping is one reference assignment, so a request
    that already took `current` finishes on the model it started with.

    A worker that starts while the active version's file is broken has nothing to keep serving:
    it serves the newest registered version that loads, and says so in `fallback` (and so in its
    log and /readyz) until the active version loads again.
    """

    def __init__(self, registry: Registry, on_change: Callable[[str], None] | None = None) -> None:
        self.registry = registry
        self.on_change = on_change
        self.current: LoadedModel | None = None
        self._refused: tuple[str, float] | None = None  # (version, mtime) that failed to load
        self.fallback: str | None = None  # why this worker serves another version than the active one
        self.unreachable: str | None = None  # why the registry cannot be asked right now (a database outage)

    def refresh(self) -> bool:
        """Load the pointer's version if it is not the one served. True when the model changed."""
        try:
            version = self.registry.active_version()
        except RegistryUnavailable as e:
            if self.unreachable is None:
                serving = self.current.version if self.current else None
                log.error(
                    "model registry unreachable; keeping the model served", extra={"error": str(e), "serving": serving}
                )
            self.unreachable = str(e)
            # A worker starting during the outage serves what this host served last, if it has it.
            version = self.registry.last_served() if self.current is None else None
        else:
            if self.unreachable is not None:
                log.info("model registry reachable again", extra={"active": version})
            self.unreachable = None
        if version is None or (self.current is not None and self.current.version == version):
            return False
        try:
            mtime = self.registry.path(version).stat().st_mtime
        except (FileNotFoundError, ValueError, LookupError):
            mtime = -1.0
        except RegistryUnavailable:
            return False  # asked again on the next tick
        if self._refused == (version, mtime):
            return False  # logged once already; wait for the pointer or the file to change
        started = time.perf_counter()
        try:
            loaded = self.registry.load(version)
        except RegistryUnavailable:
            return False
        except (WeightsError, IncompatibleModel, UnknownVersion, ValueError) as e:
            self._refused = (version, mtime)
            serving = self.current.version if self.current else None
            log.error(
                "refused to load model version; keeping the one served",
                extra={"version": version, "error": str(e), "serving": serving},
            )
            return self.current is None and self._fall_back(version, str(e))
        self._serve(loaded, started)
        self._refused = self.fallback = None
        return True

    def _fall_back(self, active: str, error: str) -> bool:
        """With nothing served yet: the newest other version that loads. True when one did."""
        try:
            by_age = self.registry.versions_by_age()
        except RegistryUnavailable:
            return False
        for version in (v for v in by_age if v != active):
            started = time.perf_counter()
            try:
                loaded = self.registry.load(version)
            except (WeightsError, IncompatibleModel, UnknownVersion, ValueError, OSError, RegistryUnavailable):
                continue
            self.fallback = f"the active version {active!r} does not load ({error}); serving {version!r} instead"
            log.error("serving a fallback model version", extra={"active": active, "serving": version, "error": error})
            self._serve(loaded, started)
            return True
        return False

    def _serve(self, loaded: LoadedModel, started: float) -> None:
        previous = self.current.version if self.current else None
        version = loaded.version
        self.current = loaded
        self.registry.remember_served(version)
        if self.on_change is not None:
            self.on_change(version)
        load_ms = round((time.perf_counter() - started) * 1e3, 1)
        log.info("serving model version", extra={"version": version, "previous": previous, "load_ms": load_ms})

    async def watch(self, interval_s: float) -> None:
        """Poll the pointer: a stat and a tiny read every interval, off the request path."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:  # the watcher must outlive any surprise
                log.exception("model watcher error")

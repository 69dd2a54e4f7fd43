"""The active model of one web worker, and the watcher that follows the registry's pointer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from app.services.registry import IncompatibleModel, LoadedModel, Registry, UnknownVersion
from model.weights import WeightsError

log = logging.getLogger("digits.serving")


class ModelHolder:
    """Holds the model this worker serves. Swapping is one reference assignment, so a request
    that already took `current` finishes on the model it started with."""

    def __init__(self, registry: Registry, on_change: Callable[[str], None] | None = None) -> None:
        self.registry = registry
        self.on_change = on_change
        self.current: LoadedModel | None = None
        self._refused: tuple[str, float] | None = None  # (version, mtime) that failed to load

    def refresh(self) -> bool:
        """Load the pointer's version if it is not the one served. True when the model changed."""
        version = self.registry.active_version()
        if version is None or (self.current is not None and self.current.version == version):
            return False
        try:
            mtime = self.registry.path(version).stat().st_mtime
        except (FileNotFoundError, ValueError):
            mtime = -1.0
        if self._refused == (version, mtime):
            return False  # logged once already; wait for the pointer or the file to change
        started = time.perf_counter()
        try:
            loaded = self.registry.load(version)
        except (WeightsError, IncompatibleModel, UnknownVersion, ValueError) as e:
            self._refused = (version, mtime)
            serving = self.current.version if self.current else None
            log.error(
                "refused to load model version; keeping the one served",
                extra={"version": version, "error": str(e), "serving": serving},
            )
            return False
        previous = self.current.version if self.current else None
        self.current = loaded
        self._refused = None
        if self.on_change is not None:
            self.on_change(version)
        load_ms = round((time.perf_counter() - started) * 1e3, 1)
        log.info("serving model version", extra={"version": version, "previous": previous, "load_ms": load_ms})
        return True

    async def watch(self, interval_s: float) -> None:
        """Poll the pointer: a stat and a tiny read every interval, off the request path."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:  # the watcher must outlive any surprise
                log.exception("model watcher error")

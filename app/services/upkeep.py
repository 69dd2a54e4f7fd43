"""What each web process does in the background besides following the active model: bring up a
database that was away at start (schema, committed weights), and give up on gone training workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from app.infra.db import DB_ERRORS, Db
from app.services.registry import Registry, RegistryUnavailable
from app.services.training_queue import TrainingQueue

log = logging.getLogger("digits.upkeep")
UNREACHABLE = (*DB_ERRORS, RegistryUnavailable)


class Upkeep:
    def __init__(self, db: Db, registry: Registry, training: TrainingQueue) -> None:
        self.db, self.registry, self.training = db, registry, training
        self.seeded = False

    def step(self) -> None:
        if not self.db.migrated:
            self.db.upgrade()
        if not self.seeded:
            self.registry.ensure()
            self.seeded = True
            log.info("model registry ready")
        self.training.reap()

    def try_step(self) -> None:
        with contextlib.suppress(*UNREACHABLE):  # the holder and the request handlers say it, not every second
            self.step()

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await asyncio.to_thread(self.try_step)
            except Exception:  # must outlive any surprise
                log.exception("upkeep error")

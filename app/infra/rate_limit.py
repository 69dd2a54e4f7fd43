"""Per-client rate limits with the `limits` library (a moving window, kept in this worker's memory).

Each worker counts on its own, so with N workers a client may get up to N times the limit across
them: enough to stop a flood, and no shared store to run. A limit shared by every worker needs one
of the storages `limits` supports (Redis, Memcached, MongoDB).
"""

from __future__ import annotations

import math
import time

from limits import parse, storage, strategies


class RateLimiter:
    def __init__(self, rate: str) -> None:
        self.item = parse(rate)  # e.g. "30/minute"
        self._limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())

    def retry_after(self, key: str) -> int | None:
        """Count one request of `key`: None if it is allowed, else the seconds to wait."""
        if self._limiter.hit(self.item, key):
            return None
        reset = self._limiter.get_window_stats(self.item, key).reset_time
        return max(1, math.ceil(reset - time.time()))

"""Admission control: past a bound on the costly work a worker has taken in, answer 503 at once.

A worker runs its requests' image work and network passes on one event loop, so everything it has
taken in and not yet answered waits there, in turn. Unbounded, 256 connections queued for seconds
(p99 2.4 s, client timeouts at 5 s) and a health check or a correction waited behind all of them.

So a worker admits at most `max_in_flight` requests of the costly routes (/predict, /read, /explain
and the batches) at a time, and answers the next one 503 with Retry-After straight away: refusing
costs microseconds, so it stays cheap at saturation, and a client learns within a millisecond to come
back rather than after seconds in a queue. Everything else (/healthz, /readyz, /metrics, the pages,
corrections, admin routes) is neither counted nor refused; it waits for at most the admitted work.

A count rather than a time bound, because an admitted request's cost is bounded already (a canvas is
decoded inline in about a millisecond; costlier images go to the pool within a pixel budget), so the
count bounds the wait: 32 requests of ~1 ms on a core is ~32 ms. A time budget would need each
request's cost estimated before its body is read.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.infra.asgi import HTTPMiddleware
from app.infra.prometheus import Metrics

COSTLY = frozenset({"/predict", "/predict/batch", "/read", "/read/batch", "/explain"})
RETRY_AFTER_S = 1
BUSY = b'{"detail": "the server is busy: try again in a second"}'


class AdmissionMiddleware(HTTPMiddleware):
    def __init__(self, app: ASGIApp, max_in_flight: int, metrics: Metrics) -> None:
        super().__init__(app)
        self.max_in_flight = max_in_flight
        self.in_flight = 0  # one event loop per worker: no lock needed
        self.metrics = metrics

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path not in COSTLY or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            self.metrics.count_refused(path)
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(BUSY)).encode()),
                        (b"retry-after", str(RETRY_AFTER_S).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": BUSY})
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

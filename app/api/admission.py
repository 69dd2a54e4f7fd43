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
count bounds the wait: 16 requests of ~1.3 ms on a core is ~20 ms. A time budget would need each
request's cost estimated before its body is read. 16, not more: at 256 connections 32 let the event
loop lag ~40 ms behind its sockets (a health check p50 41 ms); 16 cannot refuse anyone at 16
connections, as no worker can hold more than 16 of their requests.

Under `digits serve` the HTTP protocol (app/infra/http_protocol.py) checks the same gate before any
ASGI work (no task, no middleware stack), and it keeps the gate fair: a `reserve` of slots above
the bound is only for requests sent on a connection that had been quiet for a while (new ones, and
clients that honour Retry-After, such as the drawing page), so a flood that sends again the moment
it is refused cannot starve them; and the refusal of a request sent the moment its connection
was answered is held 0.1 s, so that such a client cannot make refusals most of the work.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.security_headers import ALWAYS
from app.infra.asgi import HTTPMiddleware
from app.infra.prometheus import Metrics

COSTLY = frozenset({"/predict", "/predict/batch", "/read", "/read/batch", "/explain"})
RETRY_AFTER_S = 1
BUSY = b'{"detail": "the server is busy: try again in a second"}'
BUSY_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BUSY)).encode()),
    (b"retry-after", str(RETRY_AFTER_S).encode()),
    *ALWAYS,
]


class Gate:
    """A worker's count of costly requests in flight and its bound, shared by the middleware that
    counts them and by `digits serve`'s HTTP protocol, which refuses before any ASGI work when the
    gate is full (see app/infra/http_protocol.py)."""

    def __init__(self, max_in_flight: int, metrics: Metrics) -> None:
        self.max_in_flight = max_in_flight
        self.reserve = max(1, max_in_flight // 4)
        self.in_flight = 0  # one event loop per worker: no lock needed
        self.metrics = metrics

    def full(self, quiet: bool) -> bool:
        """No room for one more request; `quiet`: it comes on a connection that had waited (see QUIET)."""
        return self.in_flight >= self.max_in_flight + (self.reserve if quiet else 0)

    def refused(self, path: str) -> None:
        self.metrics.count_refused(path)


QUIET = "digits.quiet"  # a scope key `digits serve`'s protocol sets; another server's requests count as hot
current: Gate | None = None  # this process's gate, for the HTTP protocol (one app per worker process)


class AdmissionMiddleware(HTTPMiddleware):
    def __init__(self, app: ASGIApp, max_in_flight: int, metrics: Metrics) -> None:
        global current
        super().__init__(app)
        self.gate = current = Gate(max_in_flight, metrics)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, gate = scope["path"], self.gate
        if path not in COSTLY or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if gate.full(scope.get(QUIET, False)):
            gate.refused(path)
            await send({"type": "http.response.start", "status": 503, "headers": BUSY_HEADERS})
            await send({"type": "http.response.body", "body": BUSY})
            return
        gate.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            gate.in_flight -= 1

"""uvicorn's httptools protocol with a bound on a request's head (request line and headers), and
admission control's refusals answered before any ASGI work.

httptools buffers a header for as long as it has no end, so without a bound one connection can
grow a worker by the size of whatever it sends (measured: 150 MB headers on four connections took
a worker from 276 to 997 MB; a 20 MB header was answered 200). uvicorn's h11 parser has a bound,
but answered 5-20% fewer /predict requests a second here, so `digits serve` runs this instead.
"""

from __future__ import annotations

import json

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from app.api import admission

COSTLY_RAW = frozenset(p.encode() for p in admission.COSTLY)

MAX_HEAD_BYTES = 64 * 1024  # the request line and all headers; a browser sends under 8 KiB
HEAD_TIMEOUT_S = 10.0  # to send them: a slow client holds a connection (a file descriptor) no longer
QUIET_S = 0.05  # a request sent this long after its connection could send one may use the gate's reserve
PAUSE_S = 0.1  # how long a refusal of a request sent at once is held


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """Answers 431 and closes the connection once a request's head passes MAX_HEAD_BYTES, and 408 once
    a head has taken HEAD_TIMEOUT_S (measured: 900 connections that never finish their headers stayed
    open for good, though they did not slow /predict: p50 2.5 ms with them, 2.8 ms without)."""

    _head_bytes = 0
    _in_head = True
    _head_timer = None
    _refusing: str | None = None  # the path of a request refused early, whose body is being discarded
    _ready_at: float | None = None  # when this connection last could send a request (None: not yet)
    _held = None  # the timer of a refusal being held
    _keep_alive = True  # what the refused request asked for

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        super().connection_made(transport)
        self._start_head_timer()

    def on_message_begin(self) -> None:
        if self._held is not None:  # a pipelined request: the answers go in order, so the held one now
            self._held.cancel()
            self._send_refusal()
        super().on_message_begin()
        self._head_bytes, self._in_head = 0, True
        self._start_head_timer()

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
        if not self._refuse_early():
            super().on_headers_complete()

    def _refuse_early(self) -> bool:
        """At saturation most requests are refused, and a refusal in the app went through a task and the
        middleware stack (a /healthz through them costs 0.12-0.2 ms): at 256 connections the event
        loop lagged ~40-100 ms behind its sockets, and health checks and corrections waited that long.
        Refused here, a request costs its parse and one write. Not while this connection has a request
        in flight (a pipelined request keeps its turn), nor for `Expect: 100-continue`.

        `quiet` (set in the scope for the gate): sent QUIET_S or more after this connection could
        send, so it may use the gate's reserve. A refusal of a request that was not quiet is held
        PAUSE_S: a client that ignores Retry-After and sends again at once (wrk, a buggy script)
        otherwise makes refusals most of the server's work (measured at 256 connections, 8 in
        flight: 18,000 refusals and 330 admitted requests a second; held, 16 in flight: 2,300 and
        ~800). Holding the answer, not pausing the reading after it, keeps what the client sends
        next fresh: in alternating runs, admitted p99 118-125 ms held against 173-195 paused."""
        quiet = self._ready_at is None or self.loop.time() - self._ready_at >= QUIET_S
        self.scope[admission.QUIET] = quiet
        gate = admission.current
        if gate is None or not gate.full(quiet) or self.expect_100_continue or self.parser.get_method() != b"POST":
            return False
        if (self.cycle is not None and not self.cycle.response_complete) or self.pipeline:
            return False
        path = httptools.parse_url(self.url).path
        if path not in COSTLY_RAW or self.root_path:
            return False
        self._refusing = path.decode("ascii")
        return True

    def on_body(self, body: bytes) -> None:
        if self._refusing is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refusing is None:
            super().on_message_complete()
            return
        path, self._refusing = self._refusing, None
        if admission.current is not None:
            admission.current.refused(path)
        self.server_state.total_requests += 1
        self._keep_alive = self.parser.should_keep_alive()
        if self.scope[admission.QUIET]:
            self._send_refusal()
            return
        # Sent the moment its connection was answered: the refusal is held PAUSE_S, so that a client
        # that sends again at once cannot make refusals most of the server's work, while what it
        # sends after the refusal is fresh (a pause before reading it again would age it instead).
        self.flow.pause_reading()
        self._held = self.loop.call_later(PAUSE_S, self._send_refusal)

    def _send_refusal(self) -> None:
        self._held = None
        if self.transport.is_closing():
            return
        keep_alive = self._keep_alive
        head = [STATUS_LINE[503]]
        for name, value in [*self.server_state.default_headers, *admission.BUSY_HEADERS]:
            head += [name, b": ", value, b"\r\n"]
        if not keep_alive:
            head.append(b"connection: close\r\n")
        self.transport.write(b"".join([*head, b"\r\n", admission.BUSY]))
        if not keep_alive:
            self.transport.close()
            return
        self._ready_at = self.loop.time()
        self.flow.resume_reading()
        if self.timeout_keep_alive_task is None:
            handler = self.timeout_keep_alive_handler
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, handler)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._ready_at = self.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        if self._held is not None:
            self._held.cancel()
        super().connection_lost(exc)

    def _start_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_too_slow)

    def _head_too_slow(self) -> None:
        if self._in_head and not self.transport.is_closing():
            self._refuse(408, "Request Timeout", f"request line and headers not sent within {HEAD_TIMEOUT_S:g} s")

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            # Counted after the parser has it: the overshoot is at most one read, and a chunk that also
            # carries a request body is never counted once the head is complete.
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse(
                    431, "Request Header Fields Too Large", f"request line and headers exceed {MAX_HEAD_BYTES} bytes"
                )

    def _refuse(self, status: int, reason: str, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        self.transport.write(
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n".encode()
            + b"content-length: "
            + str(len(body)).encode()
            + b"\r\nconnection: close\r\n\r\n"
            + body
        )
        self.transport.close()

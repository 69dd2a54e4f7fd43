"""uvicorn's httptools protocol with a bound on a request's head (request line and headers).

httptools buffers a header for as long as it has no end, so without a bound one connection can
grow a worker by the size of whatever it sends (measured: 150 MB headers on four connections took
a worker from 276 to 997 MB; a 20 MB header was answered 200). uvicorn's h11 parser has a bound,
but answered 5-20% fewer /predict requests a second here, so `digits serve` runs this instead.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024  # the request line and all headers; a browser sends under 8 KiB
HEAD_TIMEOUT_S = 10.0  # to send them: a slow client holds a connection (a file descriptor) no longer


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """Answers 431 and closes the connection once a request's head passes MAX_HEAD_BYTES, and 408 once
    a head has taken HEAD_TIMEOUT_S (measured: 900 connections that never finish their headers stayed
    open for good, though they did not slow /predict: p50 2.5 ms with them, 2.8 ms without)."""

    _head_bytes = 0
    _in_head = True
    _head_timer = None

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        super().connection_made(transport)
        self._start_head_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes, self._in_head = 0, True
        self._start_head_timer()

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
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

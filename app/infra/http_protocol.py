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


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """Answers 431 and closes the connection once a request's head passes MAX_HEAD_BYTES."""

    _head_bytes = 0
    _in_head = True

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes, self._in_head = 0, True

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            # Counted after the parser has it: the overshoot is at most one read, and a chunk that also
            # carries a request body is never counted once the head is complete.
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse_head()

    def _refuse_head(self) -> None:
        body = json.dumps({"detail": f"request line and headers exceed {MAX_HEAD_BYTES} bytes"}).encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
        )
        self.transport.close()

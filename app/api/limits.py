"""Request body size limit: refuse early on Content-Length, count while streaming otherwise.

Starlette's own limiter answers a declared oversize body in plain text; this one answers 413 with
the same JSON error body as every other error, and never lets a body past the limit be buffered.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.infra.asgi import HTTPMiddleware


def too_large_message(limit: int) -> str:
    return f"request body is larger than the limit of {limit} bytes"


class BodyLimitMiddleware(HTTPMiddleware):
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
        if declared is not None and declared > self.max_bytes:
            body = json.dumps({"detail": too_large_message(self.max_bytes)}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # Raised inside the endpoint's body read, so the app's error handler answers.
                    # Closing the connection stops the client sending the rest, which uvicorn would read and drop.
                    raise HTTPException(413, too_large_message(self.max_bytes), headers={"Connection": "close"})
            return message

        await self.app(scope, limited_receive, send)

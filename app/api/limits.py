"""Request body size limit: refuse early on Content-Length, count while streaming otherwise.

Starlette's own limiter answers a declared oversize body in plain text; this one answers 413 with
the same JSON error body as every other error, and never lets a body past the limit be buffered.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.infra.asgi import HTTPMiddleware


def too_large_message(limit: int) -> str:
    return f"request body is larger than the limit of {limit} bytes"


class BodyLimitMiddleware(HTTPMiddleware):
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            body = {"detail": too_large_message(self.max_bytes)}
            await JSONResponse(body, 413, headers={"Connection": "close"})(scope, receive, send)
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

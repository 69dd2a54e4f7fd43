"""Security headers on every answer: no MIME sniffing anywhere; for pages, no framing (the admin page
holds the admin token in its sessionStorage) and no referrer.

A Content-Security-Policy is not sent yet: the browser tests drive the pages with Playwright, whose
wait_for_function evaluates its predicate with eval, which a strict policy (rightly) refuses; the pages
themselves load only this server's scripts and styles, and carry no inline code or style.
"""

from __future__ import annotations

from starlette.types import Message, Receive, Scope, Send

from app.infra.asgi import HTTPMiddleware

ALWAYS = [(b"x-content-type-options", b"nosniff")]
FOR_PAGES = [(b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer")]


class SecurityHeadersMiddleware(HTTPMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + ALWAYS
                if next((v for k, v in headers if k == b"content-type"), b"").startswith(b"text/html"):
                    headers += FOR_PAGES
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)

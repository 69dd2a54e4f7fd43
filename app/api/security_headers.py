"""Security headers on every answer: no MIME sniffing anywhere; for pages, no framing (the admin page
holds the admin token in its sessionStorage), no referrer, and a Content-Security-Policy.

The policy lets a page run and load only this server's own scripts, styles and fonts, talk only to this
server, and show images only from it or from data: and blob: URLs (the model's 28x28 input, a photo
being read); inline scripts, inline style attributes in the markup, plugins, <base> and framing are
all refused. So even text that got into a page unescaped could not run. The pages were written for
it: no inline code or style, text written with textContent. A page that needs an inline script of its
own (Swagger UI at /docs) sends a policy naming that script's hash, which this middleware leaves as it is.
"""

from __future__ import annotations

from starlette.types import Message, Receive, Scope, Send

from app.infra.asgi import HTTPMiddleware

PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
ALWAYS = [(b"x-content-type-options", b"nosniff")]
FOR_PAGES = [(b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer")]
CSP = b"content-security-policy"


class SecurityHeadersMiddleware(HTTPMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + ALWAYS
                if next((v for k, v in headers if k == b"content-type"), b"").startswith(b"text/html"):
                    headers += FOR_PAGES
                    if all(k != CSP for k, _ in headers):
                        headers.append((CSP, PAGE_POLICY.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)

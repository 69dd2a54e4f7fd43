"""Admin authentication: a bearer token compared in constant time."""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer

from app.api.deps import services
from app.api.schemas import ErrorBody

log = logging.getLogger("digits.auth")
_bearer = HTTPBearer(auto_error=False, description="the admin token (ADMIN_TOKEN)")


def resolve_admin_token(configured: str | None, runtime_dir: Path) -> str:
    """ADMIN_TOKEN when set; otherwise one random token per runtime folder, shared by all workers.

    The first worker to start creates it (O_EXCL, mode 0600) and logs it once; the others read it.
    There is never a built-in default.
    """
    if configured:
        return configured
    path = runtime_dir / "admin_token"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # the creating worker may be mid-write
            token = path.read_text().strip()
            if token:
                return token
            time.sleep(0.02)
        raise RuntimeError(f"{path} is empty; delete it to generate a new admin token") from None
    token = secrets.token_urlsafe(24)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    log.warning("ADMIN_TOKEN is not set; generated an admin token", extra={"admin_token": token, "file": str(path)})
    return token


def _check_token(request: Request) -> None:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    given = given.strip() if scheme.lower() == "bearer" else ""
    expected = services(request).admin_token
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            status_code=401,
            detail="admin token missing or wrong: send 'Authorization: Bearer <ADMIN_TOKEN>'",
            headers={"WWW-Authenticate": 'Bearer realm="digits admin"'},
        )


# What marks a route as an admin route, and documents its bearer token in OpenAPI. The token itself
# is compared once, by AdminFirstRoute, before the body is read.
AdminDep = Depends(_bearer)


class AdminFirstRoute(APIRoute):
    """A route whose admin check runs before FastAPI reads the body, not after as dependencies do:
    a caller without the token gets 401 whatever it sends, and never learns how a body is parsed."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if not any(d.dependency is _bearer for d in self.dependencies):
            return handler

        async def admin_first(request: Request) -> Response:
            _check_token(request)
            return await handler(request)

        return admin_first


def admin_router(prefix: str, tag: str) -> APIRouter:
    """A router whose every route needs the admin token, checked before the body is read."""
    return APIRouter(
        prefix=prefix,
        tags=[tag],
        dependencies=[AdminDep],
        route_class=AdminFirstRoute,
        responses={401: {"model": ErrorBody, "description": "admin token missing or wrong"}},
    )

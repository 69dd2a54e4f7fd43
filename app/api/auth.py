"""Admin authentication: a bearer token compared in constant time."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer

from app.api.deps import services
from app.api.schemas import ErrorBody

log = logging.getLogger("digits.auth")
_bearer = HTTPBearer(auto_error=False, description="the admin token (ADMIN_TOKEN)")


def _check_token(request: Request) -> None:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    given = given.strip() if scheme.lower() == "bearer" else ""
    expected = services(request).admin_token.value()
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

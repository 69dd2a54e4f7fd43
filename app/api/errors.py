"""Every error as `{"detail": "what was wrong"}` with its status; never a stack trace."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from app.api.inputs import InputError, validation_message
from app.infra.db import error_reason
from app.services.registry import RegistryUnavailable

log = logging.getLogger("digits.app")
CLIENT_CLOSED = 499  # nginx's status for a client that went away before the answer: not the server's fault


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InputError)
    async def input_error(request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(ValidationError)
    async def body_validation_error(request: Request, exc: ValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_message(exc)}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def request_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]]
        return JSONResponse({"detail": "; ".join(parts)}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def client_left(request: Request, exc: ClientDisconnect) -> Response:
        log.info("client disconnected before sending its whole request", extra={"path": request.url.path})
        return Response(status_code=CLIENT_CLOSED)  # nobody reads it; the metrics count it as the client's

    @app.exception_handler(OSError)
    async def storage_error(request: Request, exc: OSError) -> JSONResponse:
        log.error("runtime folder error", extra={"path": request.url.path, "error": str(exc)})
        detail = f"the server cannot write its runtime folder ({exc.strerror or type(exc).__name__}); try again later"
        return JSONResponse({"detail": detail}, status_code=503)

    @app.exception_handler(DBAPIError)
    @app.exception_handler(PoolTimeout)
    @app.exception_handler(RegistryUnavailable)
    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        # Predictions never reach here: they need no database. What does (training, review, corrections)
        # waits for it to come back; the pool reconnects by itself.
        # The driver's words (host, port, file) are for the log, not for whoever sent the request.
        log.error("database error", extra={"path": request.url.path, "error": error_reason(exc)})
        detail = "the database is unavailable; try again later"
        return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return JSONResponse({"detail": "internal error; it has been logged"}, status_code=500)

"""The FastAPI application: `uvicorn app.main:app` from the repository root."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from threadpoolctl import threadpool_limits

from app import metrics
from app.auth import resolve_admin_token
from app.inputs import InputError, validation_message
from app.jobs import JobStore
from app.limits import BodyLimitMiddleware
from app.logs import setup_logging
from app.registry import Registry
from app.routes import models, ops, pages, predict, train
from app.serving import ModelHolder
from app.settings import REPO_ROOT, Settings, get_settings
from app.training import TrainingManager

log = logging.getLogger("digits.app")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        setup_logging(settings.log_level)
        # One BLAS thread per worker: a single image gains nothing from more, and on a small machine
        # the workers' spin-waiting BLAS threads would fight each other (and training) for the cores.
        threadpool_limits(limits=1, user_api="blas")
        registry = Registry(settings.runtime_dir, settings.weights_dir)
        registry.ensure()
        metrics.remove_dead_process_files()
        holder = ModelHolder(registry, on_change=metrics.set_active_version)
        await asyncio.to_thread(holder.refresh)  # load the active model once, before serving
        app.state.settings = settings
        app.state.registry = registry
        app.state.holder = holder
        app.state.admin_token = resolve_admin_token(settings.admin_token, settings.runtime_dir)
        app.state.jobs = JobStore(settings.runtime_dir / "jobs.sqlite")
        app.state.training = TrainingManager(app.state.jobs, settings)
        app.state.training.recover()
        watcher = asyncio.create_task(holder.watch(settings.reload_interval_s))
        try:
            yield
        finally:
            await app.state.training.shutdown()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    app = FastAPI(
        title="Digits",
        summary="Handwritten-digit recognition by a NumPy network trained on MNIST.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served by app.routes.pages from vendored assets instead of a CDN
        redoc_url=None,
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(metrics.MetricsMiddleware)
    for router in (predict.router, models.router, train.router, ops.router, pages.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=REPO_ROOT / "static"), name="static")
    _error_handlers(app)
    return app


def _error_handlers(app: FastAPI) -> None:
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

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return JSONResponse({"detail": "internal error; it has been logged"}, status_code=500)


app = create_app()

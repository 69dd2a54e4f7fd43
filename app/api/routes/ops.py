"""Operations: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import os

from fastapi import APIRouter, Response

from app.api.deps import HolderDep, MetricsDep
from app.api.schemas import Health

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz", response_model=Health, response_model_exclude_none=True, summary="Liveness: the process answers"
)
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "no valid model loaded yet"}},
    summary="Readiness: a valid model is loaded ('degraded': not the active version, or the database is away)",
)
async def readyz(response: Response, holder: HolderDep) -> Health:
    if holder.current is None:
        response.status_code = 503
        return Health(status="no model loaded")
    if holder.fallback or holder.unreachable:
        detail = holder.fallback or "the database is unreachable; serving the model loaded (the reason is in the log)"
        return Health(status="degraded", model_version=holder.current.version, worker=os.getpid(), detail=detail)
    return Health(status="ready", model_version=holder.current.version, worker=os.getpid())


@router.get("/metrics", response_class=Response, summary="Prometheus metrics, summed over all workers")
def metrics(metrics: MetricsDep) -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)

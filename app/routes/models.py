"""GET /models and POST /models/{version}/activate (admin; also the way to roll back)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException

from app.auth import AdminDep
from app.deps import get_holder, get_registry
from app.registry import InvalidVersion, Registry, UnknownVersion
from app.schemas import ErrorBody, ModelList, ModelVersion
from app.serving import ModelHolder
from model.weights import WeightsError

router = APIRouter(prefix="/models", tags=["models"])


@router.get("", response_model=ModelList, summary="Model versions with their metadata")
def list_models(
    registry: Annotated[Registry, Depends(get_registry)], holder: Annotated[ModelHolder, Depends(get_holder)]
) -> ModelList:
    active = registry.active_version()
    return ModelList(
        active=active,
        serving=holder.current.version if holder.current else None,
        versions=[
            ModelVersion(version=v, active=v == active, metadata=registry.metadata(v)) for v in registry.versions()
        ],
    )


@router.post(
    "/{version}/activate",
    response_model=ModelVersion,
    dependencies=[AdminDep],
    responses={
        401: {"model": ErrorBody},
        404: {"model": ErrorBody, "description": "no such version"},
        422: {"model": ErrorBody, "description": "the version's file fails validation; nothing changed"},
    },
    summary="Make a version the one served (rollback included)",
)
def activate(
    version: str,
    registry: Annotated[Registry, Depends(get_registry)],
    holder: Annotated[ModelHolder, Depends(get_holder)],
) -> ModelVersion:
    """Validates the whole file first; every worker serves the new version within a second."""
    try:
        loaded = registry.activate(version)
    except (UnknownVersion, InvalidVersion):
        raise HTTPException(404, f"no model version {version!r}") from None
    except WeightsError as e:
        raise HTTPException(422, f"model version {version!r} failed validation and was not activated: {e}") from None
    holder.refresh()  # this worker at once; the others through their watchers
    return ModelVersion(version=version, active=True, metadata=loaded.metadata)

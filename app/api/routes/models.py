"""GET /models and POST /models/{version}/activate (admin; also the way to roll back)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from app.api.auth import AdminDep, AdminFirstRoute
from app.api.deps import HolderDep, RegistryDep, services
from app.api.schemas import ErrorBody, ModelList, ModelVersion
from app.services.registry import IncompatibleModel, InvalidVersion, Registry, UnknownVersion
from model.layers import describe
from model.weights import WeightsError

router = APIRouter(prefix="/models", tags=["models"], route_class=AdminFirstRoute)


def _card(registry: Registry, version: str) -> dict:
    try:
        return registry.card(version).as_dict()
    except WeightsError as e:
        return {"error": str(e)}


def _version(version: str, active: bool, card: dict, holdout: dict | None = None) -> ModelVersion:
    return ModelVersion(
        version=version, active=active, architecture=describe(card.get("layers")), metadata=card, holdout=holdout
    )


@router.get("", response_model=ModelList, summary="Model versions with their metadata")
def list_models(registry: RegistryDep, holder: HolderDep, request: Request) -> ModelList:
    active = registry.active_version()
    scores = services(request).holdout
    today = scores.current_checksum()
    return ModelList(
        active=active,
        serving=holder.current.version if holder.current else None,
        versions=[_version(v, v == active, _card(registry, v), scores.score(v, today)) for v in registry.versions()],
    )


@router.post(
    "/holdout/evaluate",
    response_model=ModelList,
    dependencies=[AdminDep],
    responses={401: {"model": ErrorBody}},
    summary="Measure every version on today's real-drawing holdout",
)
def evaluate_on_holdout(registry: RegistryDep, holder: HolderDep, request: Request) -> ModelList:
    """The holdout grows as corrections are accepted; this measures every version on it as it is now
    (no retraining). Versions whose files do not load are left out."""
    scores = services(request).holdout
    holdout = scores.current()
    for version in registry.versions():
        try:
            scores.evaluate(version, registry.load(version).predictor, holdout)
        except (UnknownVersion, InvalidVersion, WeightsError, IncompatibleModel):
            continue
    return list_models(registry, holder, request)


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
def activate(version: str, registry: RegistryDep, holder: HolderDep) -> ModelVersion:
    """Validates the whole file first; every worker serves the new version within a second."""
    try:
        loaded = registry.activate(version)
    except (UnknownVersion, InvalidVersion):
        raise HTTPException(404, f"no model version {version!r}") from None
    except (WeightsError, IncompatibleModel) as e:
        raise HTTPException(422, f"model version {version!r} failed validation and was not activated: {e}") from None
    holder.refresh()  # this worker at once; the others through their watchers
    return _version(version, True, loaded.card.as_dict())

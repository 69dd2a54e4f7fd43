"""Dependencies shared by the routers."""

from __future__ import annotations

from fastapi import HTTPException, Request

from app.jobs import JobStore
from app.registry import LoadedModel, Registry
from app.serving import ModelHolder
from app.training import TrainingManager


def get_holder(request: Request) -> ModelHolder:
    return request.app.state.holder


def get_registry(request: Request) -> Registry:
    return request.app.state.registry


def get_loaded_model(request: Request) -> LoadedModel:
    model = request.app.state.holder.current
    if model is None:
        raise HTTPException(503, "no valid model is loaded yet; see /readyz")
    return model


def get_store(request: Request) -> JobStore:
    return request.app.state.jobs


def get_manager(request: Request) -> TrainingManager:
    return request.app.state.training

"""Dependencies shared by the routers, with an `Annotated` alias for each (FastAPI's own idiom).

`/predict` reads the settings and model straight from the app's state instead (see its module):
dependency solving costs more there than the rest of the request's Python.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from app.infra.prometheus import Metrics
from app.services.job_store import JobStore
from app.services.model_holder import ModelHolder
from app.services.registry import LoadedModel, Registry
from app.services.training_queue import TrainingQueue


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


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


def get_training(request: Request) -> TrainingQueue:
    return request.app.state.training


MetricsDep = Annotated[Metrics, Depends(get_metrics)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
StoreDep = Annotated[JobStore, Depends(get_store)]
TrainingDep = Annotated[TrainingQueue, Depends(get_training)]

"""What the routers use: the app's services, typed, and an `Annotated` dependency alias for each
(FastAPI's own idiom).

The lifespan (app.main) builds one `Services` and keeps it as `app.state.services`; nothing else is
kept in the app's state. `/predict` calls `services(request)` itself instead of declaring
dependencies: dependency solving costs more there than the rest of the request's Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from app.infra.prometheus import Metrics
from app.infra.rate_limit import RateLimiter
from app.infra.settings import Settings
from app.services.admin_token import AdminToken
from app.services.batcher import AnswerBatcher
from app.services.feedback_store import FeedbackStore
from app.services.holdout_scores import HoldoutScores
from app.services.image_work import ImageWork
from app.services.job_store import JobStore
from app.services.model_holder import ModelHolder
from app.services.registry import LoadedModel, Registry
from app.services.training_queue import TrainingQueue


@dataclass(frozen=True)
class Services:
    settings: Settings
    metrics: Metrics
    registry: Registry
    holder: ModelHolder
    image_work: ImageWork
    batcher: AnswerBatcher
    admin_token: AdminToken
    jobs: JobStore
    training: TrainingQueue
    feedback: FeedbackStore
    feedback_limiter: RateLimiter
    holdout: HoldoutScores


def services(request: Request) -> Services:
    return request.app.state.services


def loaded_model(request: Request) -> LoadedModel:
    model = services(request).holder.current
    if model is None:
        raise HTTPException(503, "no valid model is loaded yet; see /readyz")
    return model


def _metrics(request: Request) -> Metrics:
    return services(request).metrics


def _holder(request: Request) -> ModelHolder:
    return services(request).holder


def _registry(request: Request) -> Registry:
    return services(request).registry


def _jobs(request: Request) -> JobStore:
    return services(request).jobs


def _training(request: Request) -> TrainingQueue:
    return services(request).training


def _settings(request: Request) -> Settings:
    return services(request).settings


ServicesDep = Annotated[Services, Depends(services)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
HolderDep = Annotated[ModelHolder, Depends(_holder)]
RegistryDep = Annotated[Registry, Depends(_registry)]
JobsDep = Annotated[JobStore, Depends(_jobs)]
TrainingDep = Annotated[TrainingQueue, Depends(_training)]
SettingsDep = Annotated[Settings, Depends(_settings)]

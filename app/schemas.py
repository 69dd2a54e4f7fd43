"""Pydantic models for every request and response body."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class PredictImage(BaseModel):
    """An image file as a data URL (`data:image/png;base64,...`) or bare base64."""

    model_config = ConfigDict(extra="forbid")
    image: str = Field(..., min_length=1, examples=["data:image/png;base64,iVBORw0KGgo..."])


class PredictPixels(BaseModel):
    """Pixels already in MNIST's format (centred digit, bright ink on black), fed as they are.

    28x28 nested lists or 784 flat values. `scale` says how to read them: "unit" for 0..1 floats,
    "byte" for 0..255, "auto" (default) for 0..1 when no value exceeds 1, else 0..255.
    """

    model_config = ConfigDict(extra="forbid")
    pixels: list[list[float]] | list[float]
    scale: Literal["auto", "unit", "byte"] = "auto"


class Prediction(BaseModel):
    digit: int = Field(..., ge=0, le=9)
    confidence: float = Field(..., description="probability of `digit`")
    probabilities: list[float] = Field(..., min_length=10, max_length=10, description="P(0)..P(9), sum 1")
    uncertain: bool = Field(..., description="confidence is under the server's threshold")
    model_version: str
    input_png: str | None = Field(None, description="with ?return_input=true: the 28x28 input as base64 PNG")


class BatchItemError(BaseModel):
    status: int
    detail: str


class BatchItem(BaseModel):
    index: int
    ok: bool
    result: Prediction | None = None
    error: BatchItemError | None = None


class BatchResponse(BaseModel):
    model_version: str
    count: int
    failed: int
    items: list[BatchItem]


class PredictBatchJSON(BaseModel):
    model_config = ConfigDict(extra="forbid")
    images: list[str] = Field(..., min_length=1, description="data URLs or base64 image files")


class ModelVersion(BaseModel):
    version: str
    active: bool
    metadata: dict[str, Any]


class ModelList(BaseModel):
    active: str | None
    serving: str | None = Field(None, description="the version this worker serves")
    versions: list[ModelVersion]


class Health(BaseModel):
    status: str
    model_version: str | None = None
    worker: int | None = Field(None, description="process id of the worker that answered")


class ErrorBody(BaseModel):
    detail: Any


MAX_UNITS, MAX_EPOCHS, MAX_LAYERS = 4096, 200, 8


class TrainRequest(BaseModel):
    """A preset plus optional overrides, each within bounds that a 2-core server can honour."""

    model_config = ConfigDict(extra="forbid")
    preset: Literal["seed", "default", "quick", "tiny"] = "quick"
    layers: list[int] | None = Field(
        None, min_length=2, max_length=MAX_LAYERS, description="784, hidden sizes..., 10", examples=[[784, 256, 10]]
    )
    epochs: int | None = Field(None, ge=1, le=MAX_EPOCHS)
    batch_size: int | None = Field(None, ge=0, le=60_000, description="0 = full batch")
    lr: float | None = Field(None, gt=0, le=10)
    schedule: Literal["constant", "cosine", "step"] | None = None
    optimizer: Literal["sgd", "momentum", "rmsprop", "adam"] | None = None
    weight_decay: float | None = Field(None, ge=0, le=1)
    augment_shift: int | None = Field(None, ge=0, le=4)
    train_size: int | None = Field(None, ge=100, le=60_000)
    val_size: int | None = Field(None, ge=0, le=20_000)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    activate: Literal["if_better", "always"] = Field(
        "if_better", description="'if_better': promote only if it beats the active model's test accuracy"
    )


class TrainJob(BaseModel):
    id: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]
    preset: str
    config: dict[str, Any]
    activate: str
    created: float
    started: float | None = None
    finished: float | None = None
    duration_s: float | None = None
    cancel_requested: bool = False
    progress: dict[str, Any] | None = None
    error: str | None = None
    version: str | None = None
    promoted: bool | None = None
    result: dict[str, Any] | None = None


class TrainJobList(BaseModel):
    jobs: list[TrainJob]

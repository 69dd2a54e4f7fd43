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

"""Pydantic models for every request and response body."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator
from pydantic.json_schema import SkipJsonSchema

from app.services.job_store import Job, JobStatus
from model.config import MAX_ELASTIC, MAX_ROTATE, MAX_SCALE, MAX_SHIFT, PRESETS, TRAIN_LAYERS
from model.optimizers import OPTIMIZERS, SCHEDULES
from model.spec import N_CLASSES

Pixel = Annotated[float, Strict()]  # a JSON number: not true, not "1"
# Literal of a tuple of names: the same JSON schema (an enum of strings) as the names written out.
PresetName = Literal[tuple(PRESETS)]  # type: ignore[valid-type]
OptimizerName = Literal[OPTIMIZERS]  # type: ignore[valid-type]
ScheduleName = Literal[SCHEDULES]  # type: ignore[valid-type]
TrainLayers = Literal[TRAIN_LAYERS]  # type: ignore[valid-type]
JobStatusName = Literal[tuple(s.value for s in JobStatus)]  # type: ignore[valid-type]


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
    pixels: list[list[Pixel]] | list[Pixel]
    scale: Literal["auto", "unit", "byte"] = "auto"


class DigitAnswer(BaseModel):
    """One digit's answer: the fields /predict and each digit of /read share."""

    digit: int = Field(..., ge=0, le=N_CLASSES - 1)
    confidence: float = Field(..., description="calibrated probability of `digit`")
    probabilities: list[float] = Field(..., min_length=N_CLASSES, max_length=N_CLASSES, description="P(0)..P(9), sum 1")
    uncertain: bool = Field(..., description="not sure: confidence is under the model's abstention threshold")
    not_a_digit: bool = Field(False, description="the drawing does not look like one digit (letters, scribbles, ...)")
    not_a_digit_score: float | None = Field(
        None, description="P(not a digit) from the model's detector; absent for models without one"
    )


class Prediction(DigitAnswer):
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


class Box(BaseModel):
    """A box in the sent image's own pixels (as it is displayed: a photo's orientation honoured)."""

    x: int
    y: int
    width: int
    height: int


class ReadDigit(DigitAnswer):
    box: Box
    input_png: str | None = Field(None, description="with ?return_input=true: the 28x28 input as base64 PNG")


class ReadMark(BaseModel):
    kind: Literal["dash", "dot"] = Field(..., description="a short mark beside the digits: a minus or hyphen, a point")
    box: Box


class NumberReading(BaseModel):
    number: str = Field(..., description="the digits read, left to right (marks and non-digits left out)")
    text: str = Field(..., description='everything read, left to right: "-" a dash, "." a dot, "?" not a digit')
    uncertain: bool = Field(
        ..., description="not sure of the whole: some digit is not sure or not a digit, or the count of digits is"
    )
    count_uncertain: bool = Field(..., description="another count of digits reads nearly as well (touching digits?)")
    digits: list[ReadDigit]
    marks: list[ReadMark]
    model_version: str


class ReadBatchItem(BaseModel):
    index: int
    ok: bool
    result: NumberReading | None = None
    error: BatchItemError | None = None


class ReadBatchResponse(BaseModel):
    model_version: str
    count: int
    failed: int
    items: list[ReadBatchItem]


class Encoded(BaseModel):
    """An array as bytes: value = low + byte * (high - low) / 255, row-major over `shape` (base64)."""

    shape: list[int]
    low: float
    high: float
    data: str = Field(..., description="base64 of prod(shape) unsigned bytes")


class LayerActivation(BaseModel):
    """One layer's output for this input, the batch axis left out."""

    index: int = Field(..., description="the layer's position in the network's list (0 is the first)")
    kind: str = Field(..., examples=["conv"])
    name: str = Field(..., examples=["convolution 5x5, 16 filters"])
    shape: list[int] = Field(..., description="(height, width, channels) of feature maps, or (units,)")
    values: list[float] | None = Field(None, description="a vector's values to 6 significant digits (dense layers)")
    maps: Encoded | None = Field(None, description="feature maps (height, width, channels) or a long vector, quantised")
    channels: list[int] | None = Field(
        None, description="which channels `maps` holds, when a layer has more than 64: the most active"
    )


class FirstLayer(BaseModel):
    """The first weighted layer's units as pictures: a convolution's KxK filters, or a dense unit's 784
    weights as 28x28; the most active for this input first, at most 32."""

    layer: int
    kind: str
    count: int = Field(..., description="how many units or filters the layer has in all")
    units: list[int] = Field(..., description="which units the pictures are, in order")
    weights: Encoded = Field(..., description="(len(units), height, width)")


class Attribution(BaseModel):
    """Which pixels pushed toward `answer` (positive) rather than `versus` (negative); 28x28 maps."""

    answer: int
    versus: int = Field(..., description="the runner-up")
    logit_gap: float = Field(..., description="z_answer - z_versus, before calibration")
    gradient: Encoded = Field(..., description="d(z_answer - z_versus)/dx at each pixel, by the backward pass")
    contribution: Encoded = Field(..., description="gradient * input: the ink that is there, weighed")
    occlusion: Encoded = Field(..., description="how much the gap falls when the pixel's 4x4 patch is erased")


class SumTerm(BaseModel):
    input: int = Field(..., description="index of the input (the layer's previous activation)")
    weight: float
    x: float


class UnitSum(BaseModel):
    """z = sum of w*x over the unit's inputs, plus its bias: the largest terms, the rest added up."""

    layer: int
    unit: int
    terms: list[SumTerm]
    rest: float = Field(..., description="the sum of the other terms")
    rest_count: int
    bias: float
    value: float = Field(..., description="the unit's value in the forward pass: terms + rest + bias")


class Explanation(BaseModel):
    prediction: Prediction
    network: str = Field(..., examples=["16C5-P2-BN-64C5-P2-BN-256-BN-10"])
    temperature: float = Field(..., description="the calibration's: probabilities are softmax(logits / T)")
    input: Encoded = Field(..., description="the 28x28 input the network read")
    layers: list[LayerActivation]
    first_layer: FirstLayer
    attribution: Attribution
    unit_sum: UnitSum | None = Field(None, description="with ?layer=L&unit=U: that dense unit's sum")


class PredictBatchJSON(BaseModel):
    model_config = ConfigDict(extra="forbid")
    images: list[str] = Field(..., min_length=1, description="data URLs or base64 image files")


class FeedbackRequest(BaseModel):
    """A correction. JSON: `image` (data URL or base64) and `label`; multipart: `file` and `label`."""

    model_config = ConfigDict(extra="forbid")
    image: str | None = Field(None, description="the image that was classified, as a data URL or base64")
    label: int = Field(..., ge=0, le=N_CLASSES - 1, description="the digit it really is")
    model_version: str | None = Field(None, max_length=64, description="the version whose answer was shown")
    predicted: int | None = Field(None, ge=0, le=N_CLASSES - 1, description="the answer that was shown")


class FeedbackReceipt(BaseModel):
    id: str
    duplicate: bool = Field(..., description="this image was sent before; it is kept once")
    model_version: str = Field(..., description="the version that read the image here")
    predicted: int = Field(..., description="its answer")
    input_png: str = Field(..., description="the 28x28 image it read, as base64 PNG")


class FeedbackItem(BaseModel):
    id: str
    created: float
    client: str = Field(..., description="a salted hash of the client's address")
    label: int
    status: Literal["pending", "accepted", "rejected"]
    model_version: str
    predicted: int
    confidence: float = Field(..., description="the model's probability of its answer")
    claimed_digit: int | None = None
    holdout: bool = Field(..., description="in the real-drawing holdout (once accepted), not the training pool")
    suspicious: bool
    reasons: list[str]
    input_png: str = Field(..., description="the 28x28 input, base64 PNG")


class FeedbackList(BaseModel):
    total: int
    items: list[FeedbackItem]


class ReviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[Annotated[str, Field(max_length=64)]] = Field(..., min_length=1, max_length=1000)
    action: Literal["accept", "reject", "relabel"]
    label: int | None = Field(None, ge=0, le=N_CLASSES - 1, description="with 'relabel': the right digit")


class ReviewResult(BaseModel):
    changed: int


class ModelVersion(BaseModel):
    version: str
    active: bool
    architecture: str = Field(
        description="the layers in short: 784-256-10 for a dense stack, 32C5-P2-64C5-P2-256-10 for a CNN "
        "(filters C kernel, P pool, dense units)",
        examples=["784-1024-1024-10"],
    )
    metadata: dict[str, Any]
    holdout: dict[str, Any] | None = Field(
        None, description="accuracy on today's real-drawing holdout (n, per class), once measured on it"
    )


class ModelList(BaseModel):
    active: str | None
    serving: str | None = Field(None, description="the version this worker serves")
    versions: list[ModelVersion]


class Health(BaseModel):
    status: str
    model_version: str | None = None
    worker: int | None = Field(None, description="process id of the worker that answered")
    detail: str | None = Field(None, description="why the model served is not the active version")


class ErrorBody(BaseModel):
    detail: Any


# What a 2-core server agrees to train; the admin page's form shows the same bounds.
MAX_TRAIN_UNITS, MAX_EPOCHS, MAX_LAYERS, MAX_BATCH_SIZE = 4096, 200, 8, 60_000


class TrainRequest(BaseModel):
    """A preset plus optional overrides, each within bounds that a 2-core server can honour."""

    model_config = ConfigDict(extra="forbid")
    preset: PresetName = "quick"
    layers: list[int] | None = Field(
        None, min_length=2, max_length=MAX_LAYERS, description="784, hidden sizes..., 10", examples=[[784, 256, 10]]
    )
    epochs: int | None = Field(None, ge=1, le=MAX_EPOCHS)
    batch_size: int | None = Field(None, ge=0, le=MAX_BATCH_SIZE, description="0 = full batch")
    lr: float | None = Field(None, gt=0, le=10)
    schedule: ScheduleName | None = None
    optimizer: OptimizerName | None = None
    weight_decay: float | None = Field(None, ge=0, le=1)
    augment_shift: int | None = Field(None, ge=0, le=MAX_SHIFT)
    augment_rotate: float | None = Field(None, ge=0, le=MAX_ROTATE, description="degrees")
    augment_scale: float | None = Field(None, ge=0, le=MAX_SCALE, description="relative size change")
    augment_elastic: float | None = Field(None, ge=0, le=MAX_ELASTIC, description="RMS pixels of elastic warp")
    detector_epochs: int | None = Field(None, ge=0, le=50, description="0: no not-a-digit detector")
    train_size: int | None = Field(None, ge=100, le=60_000)
    val_size: int | None = Field(None, ge=0, le=20_000)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    activate: Literal["if_better", "always"] = Field(
        "if_better",
        description="'if_better': promote only if no worse than the active model on MNIST's test set (by more"
        " than 0.1 point) and on the real-drawing holdout (once it has 50 drawings)",
    )
    feedback: Literal["exclude", "include"] = Field(
        "exclude", description="'include': train on the accepted corrections' pool too (never the holdout)"
    )
    feedback_weight: int = Field(3, ge=1, le=100, description="with 'include': each correction counts this often")
    start_from: str | None = Field(
        None,
        max_length=64,
        description="preset 'finetune': the version to go on training (default: the active one); a fine-tune "
        "always learns from the accepted corrections' pool, mixed with MNIST images so that it does not forget",
    )
    replay: int | None = Field(None, ge=0, le=59_000, description="preset 'finetune': MNIST images mixed in")
    train_layers: TrainLayers | None = Field(None, description="preset 'finetune': 'all', or 'dense' only")
    tuned_share: float | None = Field(
        None, gt=0, le=1, description="preset 'finetune': end at parent + share * (tuned - parent)"
    )

    @field_validator("layers")
    @classmethod
    def _units_within_bounds(cls, layers: list[int] | None) -> list[int] | None:
        if layers is not None and any(not 1 <= n <= MAX_TRAIN_UNITS for n in layers):
            raise ValueError(f"every layer needs 1 to {MAX_TRAIN_UNITS} units")
        return layers


class TrainJob(Job):
    """A training job: its status, progress, result, and how long it ran."""

    status: JobStatusName  # the names, inline in the schema, rather than a separate enum type
    pid: SkipJsonSchema[int | None] = Field(None, exclude=True)  # of this host: no business of a client
    duration_s: float | None = None

    @classmethod
    def from_job(cls, job: Job) -> TrainJob:
        return cls(**job.model_dump(), duration_s=job.seconds_run())


class TrainJobList(BaseModel):
    jobs: list[TrainJob]

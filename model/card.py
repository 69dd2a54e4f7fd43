"""The model card: what a weights file says about its network, written into every `.npz`.

It names the layers to build, the input the model expects, how it was trained and how it scored.
The registry, the CLI, `/models` and the admin page all read it; its JSON keys are the ones the
first weights files were written with, so files already shipped keep loading.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from model.evaluation import Evaluation
from model.layers import describe
from model.spec import INPUT_SPEC, InputSpec

FORMAT_VERSION = 1
# Keys the first files were written with that say nothing the layers do not: "activation" was always
# "relu" and "output" always "softmax". Read and dropped.
RETIRED_KEYS = frozenset({"activation", "output"})


class CardError(ValueError):
    """A card whose JSON does not describe a model."""


@dataclass(frozen=True)
class TrainingRecord:
    config: dict[str, Any]  # the TrainConfig, as a dict
    seed: int
    seconds: float
    train_images: int
    val_images: int
    val_accuracy: float | None
    numpy: str
    python: str


@dataclass(frozen=True)
class Score:
    """Accuracy on a fixed set of n images (the generated canvas-style drawings)."""

    accuracy: float
    n: int


@dataclass(frozen=True)
class Calibration:
    """Temperature scaling and the abstention threshold, fitted after training (model.trust)."""

    temperature: float  # logits are divided by it before the softmax
    nll_temperature: float  # the temperature that minimises NLL on the fitting set (see model.trust)
    uncertain_below: float  # calibrated confidence under which an answer is "not sure"
    target_error: float  # the error rate among the answers given that chose uncertain_below
    fitted_on: int  # images (MNIST validation and generated drawings)
    ece: dict[str, dict[str, float]]  # per measured set: {"before": ..., "after": ...}, 15 bins
    reliability: dict[str, list[list[float]]]  # per measured set: [confidence, accuracy, count] per bin
    coverage: dict[str, list[list[float]]]  # per measured set: [coverage, accuracy of the answers kept]
    # Photos of paper are read through other steps (model.photos) and err otherwise: their own
    # temperature and threshold, fitted the same way on photos, so that "not sure" means the same on
    # both. None: files from before photos were read, which use the drawings' for photos too.
    photo_temperature: float | None = None
    photo_uncertain_below: float | None = None


@dataclass(frozen=True)
class DetectorCard:
    """The "not a digit" detector stored beside the classifier (arrays DW0, Db0, ...)."""

    layers: list[int]
    threshold: float  # P(not a digit) from which the answer is "not a digit"
    digits: int  # images it was trained on, each side
    negatives: int
    doubt_from: float | None = None  # P(not a digit) from which a digit answer is "not sure": an odd drawing
    auroc: dict[str, float] | None = None  # on held-out negatives: this detector vs 1 - max softmax
    # a fine-tune keeps its parent's detector (model.experiment.keep_detector): the parent's name;
    # "recalibrated": `digits calibrate --keep-detector` refitted the calibration only
    kept_from: str | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ModelCard:
    layers: list[int] | list[dict[str, Any]]  # a dense stack's sizes, or layer objects (model.layers)
    input_normalisation: InputSpec | None = INPUT_SPEC  # None: a file that does not say; never served
    training: TrainingRecord | None = None
    test: Evaluation | None = None  # on MNIST's test set
    canvas: Score | None = None
    data_checksum: str | None = None
    preset: str | None = None
    job_id: str | None = None  # the training job that made it, if a job did
    corrections: dict[str, Any] | None = None  # {"n", "checksum", "weight"} of the corrections it trained on
    parent: str | None = None  # the version a fine-tune started from (its recipe: training.config)
    calibration: Calibration | None = None  # None: temperature 1 and the server's default threshold
    detector: DetectorCard | None = None  # None: this model never says "not a digit"
    created: str = field(default_factory=_now)
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, kept as written

    @property
    def architecture(self) -> str:
        return describe(self.layers)

    @property
    def test_accuracy(self) -> float | None:
        return self.test.accuracy if self.test else None

    def replace(self, **changes: Any) -> ModelCard:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """The card as JSON-ready data: nested records as objects, unset fields left out."""
        out = dict(self.extra)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or value is None:
                continue
            out[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
        return out

    @classmethod
    def from_dict(cls, data: Any) -> ModelCard:
        if not isinstance(data, dict):
            raise CardError("metadata must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        data = {k: v for k, v in data.items() if k not in RETIRED_KEYS}
        values = {k: v for k, v in data.items() if k in known}
        try:
            for name, record in _RECORDS.items():
                if values.get(name) is not None:
                    if not isinstance(values[name], dict):
                        raise TypeError(f"must be an object, got {values[name]!r}")
                    values[name] = record(**values[name])
            if "input_normalisation" not in values:
                values["input_normalisation"] = None
            return cls(**values, extra={k: v for k, v in data.items() if k not in known})
        except TypeError as e:
            raise CardError(f"metadata does not describe a model: {e}") from None


_RECORDS = {
    "input_normalisation": InputSpec,
    "training": TrainingRecord,
    "test": Evaluation,
    "canvas": Score,
    "calibration": Calibration,
    "detector": DetectorCard,
}

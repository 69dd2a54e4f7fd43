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
from model.spec import INPUT_SPEC, InputSpec

FORMAT_VERSION = 1


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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ModelCard:
    layers: list[int]
    input_normalisation: InputSpec | None = INPUT_SPEC  # None: a file that does not say; never served
    training: TrainingRecord | None = None
    test: Evaluation | None = None  # on MNIST's test set
    canvas: Score | None = None
    data_checksum: str | None = None
    preset: str | None = None
    job_id: str | None = None  # the training job that made it, if a job did
    created: str = field(default_factory=_now)
    format_version: int = FORMAT_VERSION
    activation: str = "relu"
    output: str = "softmax"
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, kept as written

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


_RECORDS = {"input_normalisation": InputSpec, "training": TrainingRecord, "test": Evaluation, "canvas": Score}

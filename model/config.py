"""Training configurations and the named presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from model.optimizers import OPTIMIZERS, SCHEDULES

INPUT_SIZE, N_CLASSES = 784, 10


@dataclass(frozen=True)
class TrainConfig:
    layers: list[int] = field(default_factory=lambda: [784, 256, 10])
    init: str = "he"  # "he", or "uniform" in [-0.5, 0.5) as the seed network did
    optimizer: str = "adam"
    lr: float = 1e-3
    schedule: str = "cosine"
    lr_min: float = 1e-5  # where the cosine schedule ends
    step_epochs: int = 10  # the step schedule multiplies the rate by gamma every step_epochs
    gamma: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0  # decoupled (AdamW-style), applied to weights only
    epochs: int = 5
    batch_size: int = 128  # 0 means full-batch gradient descent
    augment_shift: int = 0  # random shifts of up to +-this many pixels
    train_size: int | None = None  # None: all training images that the validation set leaves
    val_size: int = 5000
    seed: int = 0
    dtype: str = "float32"

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))

    def problems(self) -> list[str]:
        p = []
        if len(self.layers) < 2 or self.layers[0] != INPUT_SIZE or self.layers[-1] != N_CLASSES:
            p.append(f"layers must start with {INPUT_SIZE} and end with {N_CLASSES}, got {self.layers}")
        if any(int(n) < 1 for n in self.layers):
            p.append("every layer needs at least one unit")
        if self.init not in ("he", "uniform"):
            p.append(f"init must be 'he' or 'uniform', got {self.init!r}")
        if self.optimizer not in OPTIMIZERS:
            p.append(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            p.append(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not self.lr > 0:
            p.append("lr must be positive")
        if self.epochs < 1:
            p.append("epochs must be at least 1")
        if self.batch_size < 0:
            p.append("batch_size must be 0 (full batch) or positive")
        if not 0 <= self.augment_shift <= 4:
            p.append("augment_shift must be within 0-4 pixels")
        if self.val_size < 0:
            p.append("val_size must be >= 0")
        if self.dtype not in ("float32", "float64"):
            p.append("dtype must be float32 or float64")
        return p

    def replace(self, **overrides: Any) -> TrainConfig:
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **overrides)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, TrainConfig] = {
    # The classic two-layer network exactly: 784-10-10, U[-0.5, 0.5) init, full-batch gradient
    # descent, alpha 0.1, 500 iterations on the first 41,000 training images (the next 1,000 are
    # its held-out set, as in the notebook it comes from). Over seeds 0, 1, 2 it reaches 83.0%, 86.1%
    # and 83.6% on the test set; the preset uses seed 2, the median.
    "seed": TrainConfig(
        layers=[784, 10, 10],
        init="uniform",
        optimizer="sgd",
        lr=0.1,
        schedule="constant",
        epochs=500,
        batch_size=0,
        train_size=41_000,
        val_size=1_000,
        seed=2,
    ),
    # The shipped model. Weight decay 0.05 was chosen over 0, 0.02 and 0.1 on two seeds (README has the
    # table); 30 epochs keep `digits train` under 3 minutes on a 2-core machine.
    "default": TrainConfig(
        layers=[784, 1024, 1024, 10],
        optimizer="adam",
        lr=1e-3,
        schedule="cosine",
        lr_min=1e-5,
        weight_decay=0.05,
        epochs=30,
        batch_size=128,
        augment_shift=2,
        val_size=1_000,
        seed=1,
    ),
    # Seconds, for demos and tests.
    "quick": TrainConfig(layers=[784, 256, 10], lr=2e-3, epochs=5, batch_size=128, val_size=5_000, seed=0),
    # A handful of steps, for the lifecycle tests of the training service.
    "tiny": TrainConfig(layers=[784, 32, 10], lr=3e-3, epochs=1, batch_size=256, train_size=4_000, val_size=1_000),
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides)

"""Training configurations, the named presets, and the allowed values of every setting.

The API's schemas, the CLI's choices and the admin page's form all read their allowed values from
here (and from the modules named below), so a new optimizer or preset appears everywhere at once.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model.augment import Distortions
from model.layers import Conv2D, Dense
from model.network import DTYPES, INIT_SCHEMES, Network, build_layers, is_sizes
from model.optimizers import OPTIMIZERS, SCHEDULES, Optimizer, Schedule, make_optimizer
from model.spec import N_CLASSES, N_PIXELS

MAX_BATCH_PARTS = 8  # model.parallel: more parts than cores only adds replicas
MAX_SHIFT = 4  # pixels; a digit is 20 px in a 28 px frame, so more moves ink out of the frame
MAX_ROTATE, MAX_SCALE, MAX_ELASTIC = 30.0, 0.3, 3.0  # degrees, relative, pixels: beyond, a 6 becomes a 9
TRAIN_LAYERS = ("all", "dense")
CHOICES = {
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "init": INIT_SCHEMES,
    "dtype": DTYPES,
    "train_layers": TRAIN_LAYERS,
}


MNIST_TRAIN_IMAGES = 60_000  # the validation set is carved from these
ACTIVE = "active"  # a fine-tune's parent until it is named: the version served when the job is submitted


@dataclass(frozen=True)
class TrainConfig:
    # Sizes of a dense stack (784, hidden..., 10), or a list of layer objects (model.layers) such as
    # {"type": "conv", "filters": 32, "size": 5}, for a network of any layers (model.network).
    layers: list[int] | list[dict[str, Any]] = field(default_factory=lambda: [784, 256, 10])
    init: str = "he"  # "he", or "uniform" in [-0.5, 0.5) as the seed network did (INIT_SCHEMES)
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
    batch_parts: int = 1  # each batch in this many parts, on as many cores, each its own batch-norm batch
    augment_shift: int = 0  # random shifts of up to +-this many pixels
    augment_rotate: float = 0.0  # degrees; with rotate, scale or elastic, shifts are continuous (model.augment)
    augment_scale: float = 0.0  # relative size change, uniform in [1 - scale, 1 + scale]
    augment_elastic: float = 0.0  # RMS displacement in pixels of an elastic warp
    clean_epochs: int = 0  # the last this many epochs (all, if fewer) train on the images as they are
    train_size: int | None = None  # None: all training images that the validation set leaves
    val_size: int = 5000
    seed: int = 0
    dtype: str = "float32"
    calibration_drawings: int = 3000  # validation images restyled as drawings, to fit the temperature on
    held_out_drawings: int = 2000  # MNIST test digits restyled as drawings, to measure calibration on
    detector_epochs: int = 0  # 0: no "not a digit" detector; it trains on the digits and `negatives`
    negatives: int = 12_000  # generated non-digits for the detector
    feedback_weight: int = 0  # 0: MNIST only; n: accepted corrections join the training set, n times each
    # Fine-tuning (model.experiment): go on training the `parent` version's network rather than a fresh
    # one, on the corrections and `replay` MNIST training images (so it does not forget), training only
    # `train_layers`: "all", or "dense" (the convolutions, frozen, run as at inference).
    parent: str | None = None
    replay: int = 0
    train_layers: str = "all"
    # The fine-tune's weights end at parent + tuned_share * (tuned - parent): below 1 keeps part of the
    # parent, which forgets less of MNIST for most of the gain (WiSE-FT, Wortsman et al. 2022).
    tuned_share: float = 1.0

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))

    def _layer_problems(self) -> list[str]:
        ends = (self.layers[0], self.layers[-1]) if self.layers else None
        if is_sizes(self.layers) and (len(self.layers) < 2 or ends != (N_PIXELS, N_CLASSES)):
            return [f"layers must start with {N_PIXELS} and end with {N_CLASSES}, got {self.layers}"]
        try:
            build_layers(self.layers)
        except ValueError as e:
            return [str(e)]
        return []

    def problems(self) -> list[str]:
        p = self._layer_problems()
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                p.append(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not self.lr > 0:
            p.append("lr must be positive")
        if self.epochs < 1:
            p.append("epochs must be at least 1")
        if self.batch_size < 0:
            p.append("batch_size must be 0 (full batch) or positive")
        if not 1 <= self.batch_parts <= MAX_BATCH_PARTS or self.batch_parts > max(self.batch_size, 1):
            p.append(f"batch_parts must be from 1 to {MAX_BATCH_PARTS} and at most batch_size")
        if not 0 <= self.augment_shift <= MAX_SHIFT:
            p.append(f"augment_shift must be within 0-{MAX_SHIFT} pixels")
        distortions = {"augment_rotate": MAX_ROTATE, "augment_scale": MAX_SCALE, "augment_elastic": MAX_ELASTIC}
        for name, top in distortions.items():
            if not 0 <= getattr(self, name) <= top:
                p.append(f"{name} must be within 0-{top}")
        if self.clean_epochs < 0:
            p.append("clean_epochs must be >= 0")
        if self.val_size < 0:
            p.append("val_size must be >= 0")
        if (self.train_size or 0) + self.val_size > MNIST_TRAIN_IMAGES:
            p.append(
                f"train_size + val_size must be at most {MNIST_TRAIN_IMAGES} (MNIST's training set), "
                f"got {self.train_size} + {self.val_size}"
            )
        if not 0 <= self.replay <= MNIST_TRAIN_IMAGES - self.val_size:
            p.append(f"replay must be within 0-{MNIST_TRAIN_IMAGES - self.val_size} (the training images there are)")
        if self.parent is None and (self.replay or self.train_layers != "all" or self.tuned_share != 1):
            p.append("replay, train_layers and tuned_share are for fine-tuning: name the parent version to start from")
        if not 0 < self.tuned_share <= 1:
            p.append("tuned_share must be in (0, 1]")
        if min(self.calibration_drawings, self.held_out_drawings, self.detector_epochs, self.negatives) < 0:
            p.append("calibration_drawings, held_out_drawings, detector_epochs and negatives must be >= 0")
        return p

    def memory_estimate(self) -> int:
        """About how many bytes training this takes at its peak: the images (twice, when distorted copies
        are made), every parameter five times over (weights, gradients, the optimizer's moments and a
        scratch copy), and one batch through every layer: its output, the gradient back through it and a
        scratch array, and for a convolution its patch matrix and that matrix's gradient."""
        layers, shape = build_layers(self.layers)
        item = np.dtype(self.dtype).itemsize
        n_train = self.train_size or MNIST_TRAIN_IMAGES - self.val_size
        batch = self.batch_size or n_train
        params = per_sample = 0
        for layer in layers:
            params += sum(math.prod(s) for s in layer.param_shapes().values())
            out = layer.build(shape)
            per_sample += 3 * math.prod(out)
            if isinstance(layer, Conv2D):
                per_sample += 2 * math.prod(layer.out_hw) * layer.size**2 * layer.channels
            shape = out
        copies = 2 if self.augment_shift or self.distortions else 1
        data = (n_train + self.val_size) * N_PIXELS * item * copies
        return data + 5 * params * item + batch * per_sample * item

    @property
    def fine_tunes(self) -> bool:
        return self.parent is not None

    def replace(self, **overrides: Any) -> TrainConfig:
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **overrides)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # ---- what the training loop builds from it ----------------------------------------------------

    def network(self, rng: np.random.Generator) -> Network:
        """A freshly initialised network of this configuration's layers, trained from the first layer
        (or, with train_layers "dense", from the first dense one)."""
        net = Network(self.layers, np.dtype(self.dtype)).init(rng, self.init)
        if self.train_layers == "dense":
            net.trainable_from = next(i for i, layer in enumerate(net.layers) if isinstance(layer, Dense))
        return net

    @property
    def distortions(self) -> Distortions | None:
        """Rotations, scaling or elastic warps (with continuous shifts), or None: whole-pixel shifts only."""
        d = Distortions(self.augment_shift, self.augment_rotate, self.augment_scale, self.augment_elastic)
        return d if d.rotate or d.scale or d.elastic else None

    def optimizer_for(self, net: Network) -> Optimizer:
        opt = make_optimizer(self.optimizer, net.n_params, net.dtype, momentum=self.momentum)
        return opt.with_weight_decay(self.weight_decay, net.decayed())

    def schedule_for(self, steps_per_epoch: int) -> Schedule:
        return Schedule(
            self.schedule,
            self.lr,
            steps_per_epoch * self.epochs,
            lr_min=self.lr_min,
            steps_per_epoch=steps_per_epoch,
            step_epochs=self.step_epochs,
            gamma=self.gamma,
        )


# fmt: off
# Pooling comes straight after each convolution, so batch norm and ReLU work on a quarter of the
# values (ReLU commutes with max; batch norm then normalises the pooled values).
CNN_LAYERS: list[dict[str, Any]] = [
    {"type": "conv", "filters": 16, "size": 5}, {"type": "maxpool", "size": 2},
    {"type": "batchnorm"}, {"type": "relu"},
    {"type": "conv", "filters": 64, "size": 5}, {"type": "maxpool", "size": 2},
    {"type": "batchnorm"}, {"type": "relu"},
    {"type": "flatten"}, {"type": "dropout", "rate": 0.3},
    {"type": "dense", "units": 256}, {"type": "batchnorm"}, {"type": "relu"}, {"type": "dropout", "rate": 0.3},
    {"type": "dense", "units": 10},
]

PRESETS: dict[str, TrainConfig] = {
    # The classic two-layer network exactly: 784-10-10, U[-0.5, 0.5) init, full-batch gradient
    # descent, alpha 0.1, 500 iterations on the first 41,000 training images (the next 1,000 are
    # its held-out set, as in the notebook it comes from). Over seeds 0, 1, 2 it reaches 83.0%, 86.1%
    # and 83.6% on the test set; the preset uses seed 2, the median.
    "seed": TrainConfig(
        [784, 10, 10], init="uniform", optimizer="sgd", lr=0.1, schedule="constant", epochs=500, batch_size=0,
        train_size=41_000, val_size=1_000, seed=2,
    ),
    # The shipped model. Weight decay 0.05 was chosen over 0, 0.02 and 0.1 on two seeds (README has the
    # table); 30 epochs keep `digits train` under 3 minutes on a 2-core machine. It also trains the
    # not-a-digit detector (model.trust).
    "default": TrainConfig(
        [784, 1024, 1024, 10], optimizer="adam", lr=1e-3, schedule="cosine", lr_min=1e-5, weight_decay=0.05,
        epochs=30, batch_size=128, augment_shift=2, val_size=1_000, seed=1, detector_epochs=8, negatives=24_000,
    ),
    # The CNN (model.layers): two 5x5 convolutions with 2x2 max pooling and batch norm, a 256-unit
    # dense layer, dropout; distorted digits (shifts, rotations, scaling) except in the last 2 epochs,
    # which see the images as they are; each batch worked in two parts on two cores (model.parallel).
    # 18 epochs, the last 3 clean, reach 99.60% in under half the wall time that 20 epochs took before
    # issue 23 (99.58-99.62%); measured the same day, 16 with 2 clean reached 99.58% and 20 with 3, 99.64%.
    "cnn": TrainConfig(
        CNN_LAYERS, optimizer="adam", lr=2e-3, schedule="cosine", lr_min=1e-5, epochs=18, batch_size=128,
        batch_parts=2, augment_shift=2, augment_rotate=10, augment_scale=0.1, clean_epochs=3, val_size=1_000,
        seed=1, detector_epochs=8, negatives=24_000,
    ),
    # Fine-tuning the active version (or the one named) on the accepted corrections, a minute from the
    # request to the new version served (issue 23 has the measurements that chose the recipe). The
    # layers are the parent's; the detector is the parent's (model.experiment.keep_detector).
    "finetune": TrainConfig(
        CNN_LAYERS, optimizer="adam", lr=3e-4, schedule="cosine", lr_min=1e-5, epochs=4, batch_size=128,
        batch_parts=2, augment_shift=2, augment_rotate=10, augment_scale=0.1, val_size=1_000, seed=1,
        parent=ACTIVE, replay=4_000, feedback_weight=3, tuned_share=0.7, train_layers="dense",
        calibration_drawings=1_000, held_out_drawings=1_000,
    ),
    # Seconds, for demos and tests; a smaller calibration too.
    "quick": TrainConfig(
        [784, 256, 10], lr=2e-3, epochs=5, val_size=5_000, calibration_drawings=300, held_out_drawings=300,
    ),
    # A handful of steps, for the lifecycle tests of the training service.
    "tiny": TrainConfig(
        [784, 32, 10], lr=3e-3, epochs=1, batch_size=256, train_size=4_000, val_size=1_000,
        calibration_drawings=60, held_out_drawings=60,
    ),
}
# fmt: on


def preset(name: str, **overrides: Any) -> TrainConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides)

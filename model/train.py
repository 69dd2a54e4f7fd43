"""The training loop: mini-batches, shuffles, schedules, augmentation, progress and cancellation."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from model.augment import Distorter
from model.config import TrainConfig
from model.data import Dataset, ShiftAugmenter
from model.evaluation import evaluate
from model.layers import describe
from model.network import Network
from model.parallel import BatchParts, made_ahead
from model.spec import from_pixels


class TrainingCancelled(Exception):
    """Raised inside train() when the cancellation check says stop."""


@dataclass
class Progress:
    epoch: int  # 1-based epoch in progress (or just finished when val_acc is set)
    epochs: int
    step: int  # optimizer steps taken so far
    total_steps: int
    loss: float  # mean loss over the steps since the last report
    train_acc: float  # accuracy on those training batches
    val_acc: float | None  # set at the end of each epoch when there is a validation set
    samples_per_s: float
    elapsed_s: float
    lr: float

    @property
    def eta_s(self) -> float:
        return self.elapsed_s / max(self.step, 1) * (self.total_steps - self.step)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "eta_s": self.eta_s}


@dataclass
class TrainResult:
    network: Network
    config: TrainConfig
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per epoch
    seconds: float = 0.0


ProgressCallback = Callable[[Progress], None]


class Batches:
    """The training set as float batches: shuffled each epoch (unless full-batch), shifted if asked.

    The rng is drawn in a fixed order (one permutation per epoch, then two shift draws per batch),
    so a seed reproduces a run.
    """

    def __init__(self, data: Dataset, config: TrainConfig, rng: np.random.Generator, ahead: bool = False) -> None:
        self.n = len(data)
        self.size = self.n if config.batch_size == 0 else min(config.batch_size, self.n)
        self.steps_per_epoch = -(-self.n // self.size)
        self.rng, self.dtype = rng, np.dtype(config.dtype)
        distortions = config.distortions
        if distortions is not None:
            self.augmenter: Distorter | ShiftAugmenter | None = Distorter(data.x, distortions, self.dtype)
        else:
            self.augmenter = ShiftAugmenter(data.x, config.augment_shift) if config.augment_shift else None
        plain = self.augmenter is None or config.clean_epochs > 0  # some epochs see the images as they are
        self.x_all = from_pixels(data.x, self.dtype) if plain else None  # (n, 784), normalised once
        # Made ahead (model.parallel.made_ahead), a batch is made while the one before is in use: each
        # gets its own array then, rather than one reused.
        self.ahead, self.width = ahead, data.x.shape[1]
        self.x_batch = None if ahead else np.empty((self.size, data.x.shape[1]), self.dtype)
        self.y_all = data.y.astype(np.intp)

    def _out(self, m: int) -> np.ndarray:
        return np.empty((m, self.width), self.dtype) if self.x_batch is None else self.x_batch[:m]

    def epoch(self, augment: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(x, y) batches of one epoch: x (m, 784) float, y (m,) labels; x is reused between batches."""
        full_batch = self.size == self.n
        perm = np.arange(self.n) if full_batch else self.rng.permutation(self.n)
        augmenter = self.augmenter if augment else None
        for start in range(0, self.n, self.size):
            idx = perm[start : start + self.size]
            m = len(idx)
            if isinstance(augmenter, Distorter):
                xb = augmenter.batch(idx, self.rng)  # floats in [0, 1] already
            elif augmenter is not None:
                xb = from_pixels(augmenter.batch(idx, self.rng), self.dtype, out=self._out(m))
            elif full_batch:
                xb = self.x_all
            else:
                xb = np.take(self.x_all, idx, axis=0, out=self._out(m), mode="clip")
            yield xb, self.y_all[idx]


class Meter:
    """Loss and accuracy since the last progress report, and the current epoch's mean loss."""

    def __init__(self) -> None:
        self.loss = self.correct = self.seen = 0.0
        self.new_epoch()

    def new_epoch(self) -> None:
        self.epoch_loss = self.epoch_seen = 0.0

    def add(self, loss: float, probs: np.ndarray, y: np.ndarray) -> None:
        self.loss += loss * len(y)
        self.epoch_loss += loss * len(y)
        self.epoch_seen += len(y)
        self.correct += float((probs.argmax(axis=1) == y).sum())
        self.seen += len(y)

    def take_window(self) -> tuple[float, float]:
        """(mean loss, accuracy) of the window, which starts again."""
        window = self.loss / self.seen, self.correct / self.seen
        self.loss = self.correct = self.seen = 0.0
        return window


def train(
    config: TrainConfig,
    train_set: Dataset,
    val_set: Dataset | None = None,
    *,
    start: Network | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    report_every: int = 50,
    processes: bool | None = None,
) -> TrainResult:
    """Train a fresh network, or go on training a copy of `start` (fine-tuning: `start` is left as it
    was); the same config and seed reproduce a run exactly. `processes` (default: when there are
    several cores) works a batch's parts in processes of their own; it only changes how fast it runs."""
    rng = np.random.default_rng(config.seed)
    net = config.network(rng)
    if start is not None:
        if start.spec != net.spec:
            raise ValueError(f"cannot fine-tune {describe(start.spec)} as {describe(net.spec)}: the layers differ")
        net.params[...] = start.params
        net.state[...] = start.state
    parts = BatchParts(net, config.batch_parts, rng, config.batch_size or len(train_set), processes, config=config)
    batches = Batches(train_set, config, rng, ahead=parts.processes)
    # Parts keep to one BLAS thread each: two BLAS pools on two cores spin-wait on each other, and a
    # product's sums are then split the same way whatever the threads, so a seed gives the same run.
    blas = threadpool_limits(1) if config.batch_parts > 1 else contextlib.nullcontext()
    try:
        with blas:
            result = _run(config, net, parts, batches, val_set, on_progress, should_stop, report_every)
    finally:
        parts.close()
    if start is not None and config.tuned_share < 1:  # part of the way back towards the parent
        for mine, parents in ((net.params, start.params), (net.state, start.state)):
            mine *= config.tuned_share
            mine += (1 - config.tuned_share) * parents
    return result


def _run(
    config: TrainConfig,
    net: Network,
    parts: BatchParts,
    batches: Batches,
    val_set: Dataset | None,
    on_progress: ProgressCallback | None,
    should_stop: Callable[[], bool] | None,
    report_every: int,
) -> TrainResult:
    schedule = config.schedule_for(batches.steps_per_epoch)
    result, meter = TrainResult(net, config), Meter()
    started = time.perf_counter()
    step = 0
    for epoch in range(1, config.epochs + 1):
        meter.new_epoch()
        made = batches.epoch(augment=epoch <= config.epochs - config.clean_epochs)
        for i, (xb, yb) in enumerate(made_ahead(made) if batches.ahead else made, 1):
            if should_stop is not None and should_stop():
                raise TrainingCancelled(f"cancelled at epoch {epoch}, step {step}")
            lr = schedule(step)
            loss, probs = parts.step(xb, yb, lr)  # the update may still be under way (BatchParts.settle)
            if not np.isfinite(loss):
                raise FloatingPointError(f"loss became {loss} at step {step}; lower the learning rate")
            step += 1
            meter.add(loss, probs, yb)
            end_of_epoch = i == batches.steps_per_epoch
            if end_of_epoch:
                parts.settle()  # the weights, whole, for the validation set and the caller
            val_acc = _end_epoch(result, meter, epoch, val_set, started) if end_of_epoch else None
            if on_progress is not None and (step % report_every == 0 or end_of_epoch):
                loss_w, acc_w = meter.take_window()
                elapsed = time.perf_counter() - started
                speed = step * batches.size / elapsed if elapsed > 0 else 0.0
                on_progress(
                    Progress(
                        epoch, config.epochs, step, schedule.total_steps, loss_w, acc_w, val_acc, speed, elapsed, lr
                    )
                )
    result.seconds = time.perf_counter() - started
    return result


def _end_epoch(result: TrainResult, meter: Meter, epoch: int, val_set: Dataset | None, started: float) -> float | None:
    """Record the epoch in the history; return the validation accuracy when there is a validation set."""
    val_acc = evaluate(result.network, val_set).accuracy if val_set is not None and len(val_set) else None
    result.history.append(
        {
            "epoch": epoch,
            "loss": meter.epoch_loss / meter.epoch_seen,  # mean over the epoch's samples
            "val_acc": val_acc,
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
    return val_acc

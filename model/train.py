"""The training loop: mini-batches, shuffles, schedules, augmentation, progress and cancellation."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from model.config import TrainConfig
from model.data import Dataset, ShiftAugmenter, to_float
from model.metrics import evaluate
from model.network import Network
from model.optimizers import learning_rate, make_optimizer


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

    def as_dict(self) -> dict:
        return {**asdict(self), "eta_s": self.eta_s}


@dataclass
class TrainResult:
    network: Network
    config: TrainConfig
    history: list[dict] = field(default_factory=list)  # one entry per epoch
    seconds: float = 0.0


ProgressCallback = Callable[[Progress], None]


def train(
    config: TrainConfig,
    train_set: Dataset,
    val_set: Dataset | None = None,
    *,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    report_every: int = 50,
) -> TrainResult:
    """Train a fresh network; the same config and seed reproduce a run exactly."""
    rng = np.random.default_rng(config.seed)
    dtype = np.dtype(config.dtype)
    net = Network(config.layers, dtype).init(rng, config.init)
    opt = make_optimizer(config.optimizer, net.n_params, dtype, momentum=config.momentum)
    n = len(train_set)
    batch = n if config.batch_size == 0 else min(config.batch_size, n)
    steps_per_epoch = -(-n // batch)
    total_steps = steps_per_epoch * config.epochs
    augmenter = ShiftAugmenter(train_set.x, config.augment_shift) if config.augment_shift else None
    x_all = None if augmenter else to_float(train_set.x, dtype)  # (n, 784), normalised once
    x_batch = np.empty((batch, train_set.x.shape[1]), dtype)
    y_all = train_set.y.astype(np.intp)
    full_batch = batch == n

    result = TrainResult(net, config)
    started = time.perf_counter()
    step = 0
    window_loss = window_correct = window_seen = 0.0
    for epoch in range(1, config.epochs + 1):
        epoch_loss = 0.0
        perm = np.arange(n) if full_batch else rng.permutation(n)
        for start in range(0, n, batch):
            if should_stop is not None and should_stop():
                raise TrainingCancelled(f"cancelled at epoch {epoch}, step {step}")
            idx = perm[start : start + batch]
            m = len(idx)
            if augmenter is not None:
                xb = to_float(augmenter.batch(idx, rng), dtype, out=x_batch[:m])
            elif full_batch:
                xb = x_all
            else:
                xb = np.take(x_all, idx, axis=0, out=x_batch[:m], mode="clip")
            yb = y_all[idx]
            lr = learning_rate(
                config.schedule,
                config.lr,
                step,
                total_steps,
                lr_min=config.lr_min,
                steps_per_epoch=steps_per_epoch,
                step_epochs=config.step_epochs,
                gamma=config.gamma,
            )
            loss, probs = net.loss_and_grads(xb, yb)
            if not np.isfinite(loss):
                raise FloatingPointError(f"loss became {loss} at step {step}; lower the learning rate")
            opt.step(net.params, net.grads, lr)
            if config.weight_decay:
                for W in net.W:  # decoupled: shrink weights directly, not through the gradient
                    W *= 1 - lr * config.weight_decay
            step += 1
            window_loss += loss * m
            epoch_loss += loss * m
            window_correct += float((probs.argmax(axis=1) == yb).sum())
            window_seen += m
            end_of_epoch = start + batch >= n
            val_acc = None
            if end_of_epoch and val_set is not None and len(val_set):
                val_acc = evaluate(net, val_set).accuracy
            if end_of_epoch:
                result.history.append(
                    {
                        "epoch": epoch,
                        "loss": epoch_loss / n,  # mean over the epoch's samples
                        "val_acc": val_acc,
                        "seconds": round(time.perf_counter() - started, 3),
                    }
                )
            if on_progress is not None and (step % report_every == 0 or end_of_epoch):
                elapsed = time.perf_counter() - started
                on_progress(
                    Progress(
                        epoch=epoch,
                        epochs=config.epochs,
                        step=step,
                        total_steps=total_steps,
                        loss=window_loss / window_seen,
                        train_acc=window_correct / window_seen,
                        val_acc=val_acc,
                        samples_per_s=step * batch / elapsed if elapsed > 0 else 0.0,
                        elapsed_s=elapsed,
                        lr=lr,
                    )
                )
                window_loss = window_correct = window_seen = 0.0
    result.seconds = time.perf_counter() - started
    return result

"""One experiment end to end: load MNIST, train a configuration, evaluate it, write its card."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from model.card import ModelCard, Score, TrainingRecord
from model.config import TrainConfig
from model.data import load_mnist, split
from model.drawings import canvas_set
from model.evaluation import evaluate
from model.images import normalise_bytes
from model.network import Network
from model.train import ProgressCallback, train


def canvas_accuracy(network: Network) -> Score:
    """Accuracy on the fixed set of generated canvas-style drawings, through the serving path."""
    drawings = list(canvas_set())
    x = np.stack([normalise_bytes(d.png).reshape(-1) for d in drawings])
    y = np.array([d.label for d in drawings])
    return Score(accuracy=float((network.predict(x) == y).mean()), n=len(drawings))


@dataclass
class Trained:
    network: Network
    card: ModelCard


def run_experiment(
    config: TrainConfig,
    data_dir: str | os.PathLike | None = None,
    *,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Trained:
    data = load_mnist(data_dir)
    train_set, val_set = split(data.train, config.train_size, config.val_size)
    result = train(config, train_set, val_set, on_progress=on_progress, should_stop=should_stop)
    record = TrainingRecord(
        config=config.as_dict(),
        seed=config.seed,
        seconds=round(result.seconds, 2),
        train_images=len(train_set),
        val_images=len(val_set),
        val_accuracy=evaluate(result.network, val_set).accuracy if len(val_set) else None,
        numpy=np.__version__,
        python=platform.python_version(),
    )
    card = ModelCard(
        layers=result.network.sizes,
        training=record,
        test=evaluate(result.network, data.test),
        canvas=canvas_accuracy(result.network),
        data_checksum=data.checksum,
    )
    return Trained(result.network, card)

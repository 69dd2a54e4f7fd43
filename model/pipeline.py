"""Train a configuration end to end: load data, train, evaluate on the test set, describe."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import Any

import numpy as np

from model.config import TrainConfig
from model.data import load_mnist, split
from model.drawings import canvas_set
from model.images import normalise_bytes
from model.metrics import evaluate
from model.network import Network
from model.train import ProgressCallback, train

# What the network expects at its input; the image pipeline that makes it is named so that a
# server can check that it feeds a model what the model was trained on.
INPUT_NORMALISATION = {
    "pixels": "value / 255, 0 = background, 1 = ink",
    "shape": [28, 28],
    "preprocess": "mnist-v1",  # crop to ink, longer side 20 px, centre of mass at the centre
}


def canvas_accuracy(network: Network) -> dict[str, Any]:
    """Accuracy on the fixed set of generated canvas-style drawings, through the serving path."""
    drawings = list(canvas_set())
    x = np.stack([normalise_bytes(d.png).reshape(-1) for d in drawings])
    y = np.array([d.label for d in drawings])
    return {"accuracy": float((network.predict(x) == y).mean()), "n": len(drawings)}


@dataclass
class Trained:
    network: Network
    metadata: dict[str, Any]


def train_and_evaluate(
    config: TrainConfig,
    data_dir: str | os.PathLike | None = None,
    *,
    on_progress: ProgressCallback | None = None,
    should_stop=None,
) -> Trained:
    data = load_mnist(data_dir)
    train_set, val_set = split(data.train, config.train_size, config.val_size)
    result = train(config, train_set, val_set, on_progress=on_progress, should_stop=should_stop)
    test = evaluate(result.network, data.test)
    val = evaluate(result.network, val_set).accuracy if len(val_set) else None
    metadata = {
        "input_normalisation": INPUT_NORMALISATION,
        "training": {
            "config": config.as_dict(),
            "seed": config.seed,
            "seconds": round(result.seconds, 2),
            "train_images": len(train_set),
            "val_images": len(val_set),
            "val_accuracy": val,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "test": test.as_dict(),
        "canvas": canvas_accuracy(result.network),
        "data_checksum": data.checksum,
    }
    return Trained(result.network, metadata)

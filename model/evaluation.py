"""Evaluation of a network on labelled images: accuracy, per-class accuracy, confusion matrix."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from model.data import Dataset
from model.network import Network
from model.spec import N_CLASSES, from_pixels


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    per_class: list[float]  # accuracy of each true digit 0-9
    confusion: list[list[int]]  # confusion[true][predicted]
    n: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, k: int = N_CLASSES) -> np.ndarray:
    return np.bincount(k * labels.astype(np.int64) + predicted, minlength=k * k).reshape(k, k)


def evaluate(network: Network, data: Dataset) -> Evaluation:
    predicted = network.predict(from_pixels(data.x, network.dtype))
    cm = confusion_matrix(data.y, predicted)
    per_class = cm.diagonal() / np.maximum(cm.sum(axis=1), 1)
    return Evaluation(
        accuracy=float(cm.trace() / max(len(data), 1)),
        per_class=[round(float(a), 6) for a in per_class],
        confusion=cm.tolist(),
        n=len(data),
    )

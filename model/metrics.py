"""Evaluation: accuracy, per-class accuracy and the confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.data import Dataset, to_float
from model.network import Network


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    per_class: list[float]  # accuracy of each true digit 0-9
    confusion: list[list[int]]  # confusion[true][predicted]
    n: int

    def as_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "per_class": self.per_class,
            "confusion": self.confusion,
            "n": self.n,
        }


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, k: int = 10) -> np.ndarray:
    return np.bincount(k * labels.astype(np.int64) + predicted, minlength=k * k).reshape(k, k)


def evaluate(network: Network, data: Dataset) -> Evaluation:
    predicted = network.predict(to_float(data.x, network.dtype))
    cm = confusion_matrix(data.y, predicted)
    per_class = cm.diagonal() / np.maximum(cm.sum(axis=1), 1)
    return Evaluation(
        accuracy=float(cm.trace() / max(len(data), 1)),
        per_class=[round(float(a), 6) for a in per_class],
        confusion=cm.tolist(),
        n=len(data),
    )

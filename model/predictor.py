"""A trained model as it answers: calibrated digit probabilities, and how sure it is that it saw a digit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.card import ModelCard
from model.network import Network

DEFAULT_UNCERTAIN_BELOW = 0.7  # for cards without a calibration (files made before it existed)


@dataclass(frozen=True)
class Answers:
    probabilities: np.ndarray  # (m, 10), calibrated
    not_digit: np.ndarray | None  # (m,) P(not a digit) from the detector, None without one
    is_not_digit: np.ndarray  # (m,) bool: the detector says it is not a digit
    uncertain: np.ndarray  # (m,) bool: "not sure": low confidence, or a digit that looks odd to the detector


@dataclass(frozen=True)
class Predictor:
    network: Network
    card: ModelCard
    detector: Network | None = None

    @property
    def temperature(self) -> float:
        return self.card.calibration.temperature if self.card.calibration else 1.0

    def temperature_of(self, photo: bool) -> float:
        """The calibration's temperature for a drawing, or for a photo of paper (which has its own)."""
        cal = self.card.calibration
        if photo and cal is not None and cal.photo_temperature is not None:
            return cal.photo_temperature
        return self.temperature

    @property
    def uncertain_below(self) -> float:
        return self.card.calibration.uncertain_below if self.card.calibration else DEFAULT_UNCERTAIN_BELOW

    def answer(self, X: np.ndarray, uncertain_below: float | None = None, photo: np.ndarray | None = None) -> Answers:
        """X (m, 784) in [0, 1] -> calibrated probabilities, not-a-digit scores and the verdicts;
        `uncertain_below` replaces the card's confidence threshold (a server's override); `photo` (m,)
        says which rows came from photos of paper, which have a calibration of their own."""
        cal = self.card.calibration
        photo = np.zeros(len(X), bool) if photo is None else np.asarray(photo, bool)
        temperature = np.full(len(X), self.temperature, np.float32)
        below = np.full(len(X), self.uncertain_below)
        if cal is not None and cal.photo_temperature is not None:
            temperature[photo] = cal.photo_temperature
            below[photo] = cal.photo_uncertain_below
        if uncertain_below is not None:
            below[:] = uncertain_below
        probs = self.network.predict_proba(X, temperature=temperature if photo.any() else self.temperature)
        unsure = probs.max(axis=1) < below
        if self.detector is None:
            return Answers(probs, None, np.zeros(len(probs), bool), unsure)
        score = self.detector.predict_proba(X)[:, 1]
        doubt = self.card.detector.doubt_from
        if doubt is not None:
            unsure |= score >= doubt
        return Answers(probs, score, score >= self.card.detector.threshold, unsure)

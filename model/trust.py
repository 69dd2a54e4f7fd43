"""Answers people can trust: a calibrated classifier that can say "not sure", and a detector that can
say "that is not a digit".

After training, `fit_calibration` fits the temperature and the abstention threshold on data that
looks like what users send (MNIST's validation images redrawn as pad drawings, and generated canvas
drawings; never the test set nor the drawings used to measure), and `train_detector`, when asked,
trains the detector: a small network of its own that tells digits (MNIST's and drawn) from generated
non-digits (model.negatives). It is a separate network rather than an 11th output so that the digit
classifier, and its accuracy, stay exactly as trained.
"""

from __future__ import annotations

import numpy as np

from model import calibration
from model.card import Calibration, DetectorCard
from model.drawings import STYLES, canvas_set, draw, restyle
from model.generated import generated
from model.images import ImageError, normalise_bytes, to_mnist
from model.negatives import held_out_set, training_masks
from model.network import Network
from model.optimizers import make_optimizer
from model.photo_set import non_digit_set, photo_set
from model.spec import SIDE
from model.variants import fitted_set

TARGET_ERROR = 0.001  # of the answers given, at most this many wrong: the rest are "not sure"
# Photos of paper: at most 0.4% wrong among the answers given (the goal is 0.5%). As strict a target as
# the drawings' leaves almost nothing answered: a photo misread after a failed cleaning is misread
# with confidence, and only the detector can tell.
PHOTO_TARGET_ERROR = 0.004
DETECTOR_FLAGS = 0.01  # of the digits used to fit it, at most this many called "not a digit"
DETECTOR_DOUBTS = 0.02  # ... and at most this many (the oddest-looking) answered "not sure"
FIT_PHOTO_SCALE = 0.5  # photos to fit on are made at half size: 4x cheaper, read alike


Labelled = tuple[np.ndarray, np.ndarray]  # x (n, 784) in [0, 1], labels (n,)


def drawings(n: int, seed: int, size: int = 140) -> Labelled:
    """n generated canvas drawings, normalised as the server does: x (n, 784) in [0, 1], labels (n,)."""

    def make() -> Labelled:
        rng = np.random.default_rng(seed)
        made = [draw(i % 10, rng, STYLES[i % len(STYLES)], size=size) for i in range(n)]
        return np.stack([normalise_bytes(d.png).reshape(-1) for d in made]), np.array([d.label for d in made])

    return generated("drawings", make, n=n, seed=seed, size=size)


def canvas() -> Labelled:
    """The fixed canvas-style set (model.drawings.canvas_set), normalised as the server does."""

    def make() -> Labelled:
        made = list(canvas_set())
        return np.stack([normalise_bytes(d.png).reshape(-1) for d in made]), np.array([d.label for d in made])

    return generated("canvas", make)


def held_out_negatives() -> np.ndarray:
    """The held-out non-digits (model.negatives.held_out_set) the server would read, normalised; the
    ones it refuses outright need no score."""

    def make() -> tuple[np.ndarray]:
        read = (normalised_or_none(png) for _, png in held_out_set())
        return (np.stack([x for x in read if x is not None]),)

    return generated("held-out-negatives", make)[0]


def restyled(x: np.ndarray, y: np.ndarray, seed: int) -> Labelled:
    """MNIST images as drawn on the pad (model.drawings.restyle), through the server's normalisation."""

    def make() -> Labelled:
        rng = np.random.default_rng(seed)
        # A 140-pixel pad: the normalisation makes every size alike, and it is four times cheaper than 280.
        return np.stack([normalise_bytes(restyle(i.reshape(SIDE, SIDE), rng, size=140)).reshape(-1) for i in x]), y

    return generated("restyled", make, x=x, y=y, seed=seed)


def variants(x: np.ndarray, y: np.ndarray, seed: int) -> Labelled:
    """MNIST images (n, 784) uint8 in the fitted kinds of model.variants (marker and hairline pens, low
    resolution), normalised as the server does: x (n, 784), labels."""

    def make() -> Labelled:
        read = [(normalised_or_none(png), label) for _, png, label in fitted_set(x, y, seed)]
        read = [(x, label) for x, label in read if x is not None]
        return np.stack([r[0] for r in read]), np.array([r[1] for r in read])

    return generated("variants", make, x=x, y=y, seed=seed)


def photos(x: np.ndarray, y: np.ndarray, seed: int) -> Labelled:
    """MNIST images (n, 784) uint8 written on paper and photographed (the fitted kinds of
    model.photo_set, never the held-out ones), normalised as the server does: x (n, 784), labels."""

    def make() -> Labelled:
        made = photo_set(x.reshape(-1, SIDE, SIDE), y, seed=seed, held_out=False, scale=FIT_PHOTO_SCALE)
        read = [(normalised_or_none(p.jpeg), p.label) for p in made]
        read = [(x, label) for x, label in read if x is not None]
        return np.stack([r[0] for r in read]), np.array([r[1] for r in read])

    return generated("photos", make, x=x, y=y, seed=seed)


def photo_negatives(n: int, seed: int, digits: np.ndarray) -> np.ndarray:
    """n photos that hold no single digit (text, rooms, several digits), normalised; blank pages are
    left out: they are "no ink found" before the detector is asked."""

    def make() -> tuple[np.ndarray]:
        made = non_digit_set(n, seed, digits.reshape(-1, SIDE, SIDE), scale=FIT_PHOTO_SCALE)
        return (np.stack([x for x in (normalised_or_none(p.jpeg) for p in made) if x is not None]),)

    return generated("photo-negatives", make, n=n, seed=seed, digits=digits)[0]


def normalised_or_none(data: bytes) -> np.ndarray | None:
    """The network's input (784,), or None for an image the server refuses (no ink, not one digit)."""
    try:
        return normalise_bytes(data).reshape(-1)
    except ImageError:
        return None


def negatives(n: int, seed: int) -> np.ndarray:
    """n generated non-digits (training kinds and fonts), normalised: (n, 784) in [0, 1]."""

    def make() -> tuple[np.ndarray]:
        out = []
        for _, ink in training_masks(n, seed):
            try:
                out.append(to_mnist(np.asarray(ink, np.float32) / 255).reshape(-1))
            except ImageError:  # a shape drawn too faint to see: nothing a person would send
                continue
        return (np.stack(out),)

    return generated("negatives", make, n=n, seed=seed)[0]


def fit_calibration(
    network: Network,
    fit_x: np.ndarray,
    fit_y: np.ndarray,
    measured: dict[str, tuple[np.ndarray, np.ndarray]],
    target_error: float = TARGET_ERROR,
) -> Calibration:
    """Temperature and abstention threshold from (fit_x, fit_y); ECE, reliability and coverage on each
    measured set, before and after."""
    fit_logits = network.logits(fit_x).astype(np.float64)
    nll_temperature = calibration.fit_temperature(fit_logits, fit_y)
    # NLL weighs the few confident mistakes, ECE the many right answers: when almost every answer is
    # right and sure they disagree. Between 1 and the NLL optimum, take the temperature with the lowest
    # calibration error on the data it is fitted on (never on the sets it is measured on).
    candidates = np.geomspace(min(1.0, nll_temperature), max(1.0, nll_temperature), 25)
    errors = [calibration.ece(calibration.calibrated(fit_logits, t), fit_y) for t in candidates]
    temperature = float(candidates[int(np.argmin(errors))])
    threshold = calibration.abstention_threshold(calibration.calibrated(fit_logits, temperature), fit_y, target_error)
    ece, diagrams, coverage = {}, {}, {}
    for name, (x, y) in measured.items():
        logits = network.logits(x).astype(np.float64)
        before, after = calibration.calibrated(logits, 1.0), calibration.calibrated(logits, temperature)
        ece[name] = {"before": calibration.ece(before, y), "after": calibration.ece(after, y)}
        diagrams[name] = calibration.reliability(after, y)
        coverage[name] = calibration.coverage_curve(after, y)
    return Calibration(temperature, nll_temperature, threshold, target_error, len(fit_y), ece, diagrams, coverage)


def train_detector(
    digits: np.ndarray, non_digits: np.ndarray, seed: int, epochs: int = 4, hidden: int = 256
) -> Network:
    """A [inputs, hidden, 2] network (784 inputs for the not-a-digit detector): output 1 is "not a
    digit". Negatives are drawn as often as digits."""
    rng = np.random.default_rng(seed)
    net = Network([digits.shape[1], hidden, 2]).init(rng, "he")
    opt = make_optimizer("adam", net.n_params, net.dtype)
    x = np.concatenate([digits, non_digits]).astype(np.float32)
    y = np.concatenate([np.zeros(len(digits), np.intp), np.ones(len(non_digits), np.intp)])
    weight = np.where(y == 1, len(digits) / len(non_digits), 1.0)
    p = weight / weight.sum()
    batch = 128
    for _ in range(epochs * len(digits) // batch):
        idx = rng.choice(len(x), batch, p=p)
        net.backprop(x[idx], y[idx])
        opt.step(net.params, net.grads, 1e-3)
    return net


def detector_card(detector: Network, fit_digits: np.ndarray, n_digits: int, n_negatives: int) -> DetectorCard:
    scores = detector.predict_proba(fit_digits)[:, 1]
    threshold = float(max(0.5, np.quantile(scores, 1 - DETECTOR_FLAGS)))
    # A digit that looks odd to the detector is wrong more often: such answers are "not sure".
    doubt_from = float(min(threshold, np.quantile(scores, 1 - DETECTOR_DOUBTS)))
    return DetectorCard(detector.sizes, threshold, n_digits, n_negatives, doubt_from=doubt_from)

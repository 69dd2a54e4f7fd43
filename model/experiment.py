"""One experiment end to end: load MNIST, train a configuration, evaluate it, make it trustworthy
(calibration and, when asked, the not-a-digit detector), write its card."""

from __future__ import annotations

import dataclasses
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from model import calibration, trust
from model.card import ModelCard, Score, TrainingRecord
from model.config import TrainConfig
from model.data import Dataset, Mnist, load_mnist, split
from model.drawings import canvas_set, restyle
from model.evaluation import evaluate
from model.images import normalise_bytes
from model.negatives import held_out_set
from model.network import Network
from model.predictor import Predictor
from model.spec import SIDE, from_pixels
from model.train import ProgressCallback, train

Labelled = tuple[np.ndarray, np.ndarray]  # x (n, 784) in [0, 1], labels (n,)
PHOTO_NEGATIVES = 900  # photos of text, rooms and several digits, beside the drawn negatives


def restyled(x: np.ndarray, y: np.ndarray, seed: int) -> Labelled:
    """MNIST images as drawn on the pad (model.drawings.restyle), through the server's normalisation."""
    rng = np.random.default_rng(seed)
    # A 140-pixel pad: the normalisation makes every size alike, and it is four times cheaper than 280.
    return np.stack([normalise_bytes(restyle(img.reshape(SIDE, SIDE), rng, size=140)).reshape(-1) for img in x]), y


@dataclass(frozen=True)
class Measured:
    """The sets a model is measured on and never fitted on."""

    mnist_test: Labelled
    canvas: Labelled  # the fixed canvas-style set of generated template drawings
    drawings: Labelled  # held-out digit drawings: MNIST test digits restyled, and the canvas set

    @classmethod
    def of(cls, data: Mnist, restyled_test: int) -> Measured:
        made = list(canvas_set())
        canvas = np.stack([normalise_bytes(d.png).reshape(-1) for d in made]), np.array([d.label for d in made])
        real = restyled(data.test.x[:restyled_test], data.test.y[:restyled_test], seed=2027)
        drawings = np.concatenate([real[0], canvas[0]]), np.concatenate([real[1], canvas[1]])
        return cls((from_pixels(data.test.x), data.test.y), canvas, drawings)


def canvas_accuracy(network: Network, measured: Measured) -> Score:
    """Accuracy on the fixed set of generated canvas-style drawings, through the serving path."""
    x, y = measured.canvas
    return Score(accuracy=float((network.predict(x) == y).mean()), n=len(y))


def make_trustworthy(
    trained: Predictor, config: TrainConfig, train_set: Dataset, val_set: Dataset, measured: Measured
) -> Predictor:
    """`trained` with a calibration fitted (and a detector trained when config.detector_epochs > 0)."""
    n = config.calibration_drawings
    parts = [trust.drawings(n // 4, seed=config.seed + 7001)]
    if len(val_set):  # MNIST's validation images as drawn on the pad: what users send
        repeat = np.resize(np.arange(len(val_set)), n)  # each image drawn several ways when n > len(val_set)
        parts.append(restyled(val_set.x[repeat], val_set.y[repeat], seed=config.seed + 7004))
    fit_x, fit_y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    sets = {"mnist_test": measured.mnist_test, "drawings": measured.drawings}
    calibrated = trust.fit_calibration(trained.network, fit_x, fit_y, sets)
    # Photos of paper, fitted apart to the same error target, so "not sure" means the same on both.
    source = val_set if len(val_set) else train_set
    pick = np.resize(np.arange(len(source)), n // 2)
    photo_x, photo_y = trust.photos(source.x[pick], source.y[pick], seed=config.seed + 7006)
    on_photos = trust.fit_calibration(trained.network, photo_x, photo_y, {}, trust.PHOTO_TARGET_ERROR)
    calibrated = dataclasses.replace(
        calibrated, photo_temperature=on_photos.temperature, photo_uncertain_below=on_photos.uncertain_below
    )
    trained = dataclasses.replace(trained, card=trained.card.replace(calibration=calibrated))
    if not config.detector_epochs:
        return trained
    drawn = restyled(train_set.x[:3000], train_set.y[:3000], seed=config.seed + 7005)[0]
    photographed = trust.photos(train_set.x[3000:4500], train_set.y[3000:4500], seed=config.seed + 7007)[0]
    digits = np.concatenate(
        [from_pixels(train_set.x), trust.drawings(3000, seed=config.seed + 7002)[0], drawn, photographed]
    )
    photo_non_digits = trust.photo_negatives(PHOTO_NEGATIVES, seed=config.seed + 7008, digits=train_set.x[:500])
    non_digits = np.concatenate([trust.negatives(config.negatives, seed=config.seed + 7003), photo_non_digits])
    detector = trust.train_detector(digits, non_digits, config.seed, config.detector_epochs)
    card = trust.detector_card(detector, np.concatenate([fit_x, photo_x]), len(digits), len(non_digits))
    card = dataclasses.replace(card, auroc=_auroc(trained.network, detector, measured))
    return dataclasses.replace(trained, card=trained.card.replace(detector=card), detector=detector)


def _auroc(net: Network, detector: Network, measured: Measured) -> dict[str, float]:
    """How well each score separates held-out non-digits from the measured digits."""
    digits = measured.drawings[0]
    read = (trust.normalised_or_none(png) for _, png in held_out_set())
    non_digits = np.stack([x for x in read if x is not None])  # the refused ones need no score
    return {
        "detector": calibration.auroc(detector.predict_proba(digits)[:, 1], detector.predict_proba(non_digits)[:, 1]),
        "max_softmax": calibration.auroc(
            1 - net.predict_proba(digits).max(axis=1), 1 - net.predict_proba(non_digits).max(axis=1)
        ),
    }


@dataclass(frozen=True)
class Corrections:
    """Accepted corrections from users, to learn from: x uint8 (n, 784), labels, and their checksum."""

    data: Dataset
    checksum: str

    def record(self, weight: int) -> dict:
        return {"n": len(self.data), "checksum": self.checksum, "weight": weight}


def run_experiment(
    config: TrainConfig,
    data_dir: str | os.PathLike | None = None,
    *,
    corrections: Corrections | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Predictor:
    data = load_mnist(data_dir)
    train_set, val_set = split(data.train, config.train_size, config.val_size)
    use = corrections is not None and config.feedback_weight > 0 and len(corrections.data) > 0
    if use:  # oversampled: a few hundred drawings would be lost among 59,000 MNIST digits otherwise
        extra = corrections.data
        train_set = Dataset(
            np.concatenate([train_set.x, *[extra.x] * config.feedback_weight]),
            np.concatenate([train_set.y, *[extra.y] * config.feedback_weight]),
        )
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
    measured = Measured.of(data, config.held_out_drawings)
    card = ModelCard(
        layers=result.network.spec,
        training=record,
        test=evaluate(result.network, data.test),
        canvas=canvas_accuracy(result.network, measured),
        data_checksum=data.checksum,
        corrections=corrections.record(config.feedback_weight) if use else None,
    )
    return make_trustworthy(Predictor(result.network, card), config, train_set, val_set, measured)


def retrofit(
    network: Network, card: ModelCard, config: TrainConfig, data_dir: str | os.PathLike | None = None
) -> Predictor:
    """An already trained classifier, made trustworthy as a new run would be: same weights, new fits."""
    data = load_mnist(data_dir)
    train_set, val_set = split(data.train, config.train_size, config.val_size)
    untrusted = Predictor(network, card.replace(calibration=None, detector=None))
    return make_trustworthy(untrusted, config, train_set, val_set, Measured.of(data, config.held_out_drawings))

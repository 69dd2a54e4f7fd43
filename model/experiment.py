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
from model.evaluation import evaluate
from model.network import Network
from model.predictor import Predictor
from model.spec import from_pixels
from model.train import ProgressCallback, train

Labelled = tuple[np.ndarray, np.ndarray]  # x (n, 784) in [0, 1], labels (n,)
PHOTO_NEGATIVES = 900  # photos of text, rooms and several digits, beside the drawn negatives


@dataclass(frozen=True)
class Measured:
    """The sets a model is measured on and never fitted on."""

    mnist_test: Labelled
    canvas: Labelled  # the fixed canvas-style set of generated template drawings
    drawings: Labelled  # held-out digit drawings: MNIST test digits restyled, and the canvas set

    @classmethod
    def of(cls, data: Mnist, restyled_test: int) -> Measured:
        canvas = trust.canvas()
        real = trust.restyled(data.test.x[:restyled_test], data.test.y[:restyled_test], seed=2027)
        drawings = np.concatenate([real[0], canvas[0]]), np.concatenate([real[1], canvas[1]])
        return cls((from_pixels(data.test.x), data.test.y), canvas, drawings)


def canvas_accuracy(network: Network, measured: Measured) -> Score:
    """Accuracy on the fixed set of generated canvas-style drawings, through the serving path."""
    x, y = measured.canvas
    return Score(accuracy=float((network.predict(x) == y).mean()), n=len(y))


def make_trustworthy(
    trained: Predictor,
    config: TrainConfig,
    train_set: Dataset,
    val_set: Dataset,
    measured: Measured,
    parent: Predictor | None = None,
) -> Predictor:
    """`trained` with a calibration fitted, and a detector: trained when config.detector_epochs > 0,
    else the parent's, when fine-tuning one that has a detector (see keep_detector)."""
    n = config.calibration_drawings
    parts = [trust.drawings(n // 4, seed=config.seed + 7001)]
    if len(val_set):  # MNIST's validation images as drawn on the pad: what users send
        repeat = np.resize(np.arange(len(val_set)), n)  # each image drawn several ways when n > len(val_set)
        parts.append(trust.restyled(val_set.x[repeat], val_set.y[repeat], seed=config.seed + 7004))
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
        return keep_detector(trained, parent, config.parent, measured) if parent is not None else trained
    drawn = trust.restyled(train_set.x[:3000], train_set.y[:3000], seed=config.seed + 7005)[0]
    photographed = trust.photos(train_set.x[3000:4500], train_set.y[3000:4500], seed=config.seed + 7007)[0]
    # Marker and hairline pens, low resolution (model.variants): digits too, however odd they look
    varied = trust.variants(train_set.x[4500:7500], train_set.y[4500:7500], seed=config.seed + 7010)[0]
    digits = np.concatenate(
        [from_pixels(train_set.x), trust.drawings(3000, seed=config.seed + 7002)[0], drawn, photographed, varied]
    )
    photo_non_digits = trust.photo_negatives(PHOTO_NEGATIVES, seed=config.seed + 7008, digits=train_set.x[:500])
    non_digits = np.concatenate([trust.negatives(config.negatives, seed=config.seed + 7003), photo_non_digits])
    detector = trust.train_detector(digits, non_digits, config.seed, config.detector_epochs)
    varied_fit = trust.variants(source.x[pick], source.y[pick], seed=config.seed + 7011)[0]
    card = trust.detector_card(detector, np.concatenate([fit_x, photo_x, varied_fit]), len(digits), len(non_digits))
    card = dataclasses.replace(card, auroc=_auroc(trained.network, detector, measured))
    return dataclasses.replace(trained, card=trained.card.replace(detector=card), detector=detector)


def keep_detector(trained: Predictor, parent: Predictor, name: str | None, measured: Measured) -> Predictor:
    """`trained` with its parent's not-a-digit detector, unchanged, and why in its card.

    The detector reads the image alone, never the classifier, so a fine-tuned classifier leaves what it
    should say as it was; retraining it would cost the 24,000 generated negatives that a fine-tune is
    too short for. Only its comparison with the new classifier's max-softmax is measured again."""
    if parent.detector is None or parent.card.detector is None:
        return trained
    card = dataclasses.replace(
        parent.card.detector,
        kept_from=name,
        auroc=_auroc(trained.network, parent.detector, measured),
    )
    return dataclasses.replace(trained, card=trained.card.replace(detector=card), detector=parent.detector)


def _auroc(net: Network, detector: Network, measured: Measured) -> dict[str, float]:
    """How well each score separates held-out non-digits from the measured digits."""
    digits, non_digits = measured.drawings[0], trust.held_out_negatives()
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


def learning_set(config: TrainConfig, train_set: Dataset, corrections: Corrections | None) -> Dataset:
    """What the network trains on: MNIST's training images, or for a fine-tune `config.replay` of them
    drawn at random; and the corrections, `feedback_weight` times each (a few hundred drawings would be
    lost among 59,000 MNIST digits otherwise)."""
    if config.fine_tunes:
        pick = np.random.default_rng(config.seed + 7009).choice(len(train_set), config.replay, replace=False)
        train_set = Dataset(train_set.x[np.sort(pick)], train_set.y[np.sort(pick)])
    if corrections is None or not config.feedback_weight or not len(corrections.data):
        return train_set
    extra = corrections.data
    return Dataset(
        np.concatenate([train_set.x, *[extra.x] * config.feedback_weight]),
        np.concatenate([train_set.y, *[extra.y] * config.feedback_weight]),
    )


def run_experiment(
    config: TrainConfig,
    data_dir: str | os.PathLike | None = None,
    *,
    corrections: Corrections | None = None,
    parent: Predictor | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Predictor:
    """Train `config` (from scratch, or on from `parent` when it fine-tunes), evaluate, make trustworthy."""
    use = corrections is not None and config.feedback_weight > 0 and len(corrections.data) > 0
    if config.fine_tunes and (parent is None or not use):
        raise ValueError("a fine-tune needs the network it starts from and accepted corrections to learn from")
    data = load_mnist(data_dir)
    mnist_train, val_set = split(data.train, config.train_size, config.val_size)
    train_set = learning_set(config, mnist_train, corrections)
    start = parent.network if config.fine_tunes and parent is not None else None
    result = train(config, train_set, val_set, start=start, on_progress=on_progress, should_stop=should_stop)
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
        corrections=corrections.record(config.feedback_weight) if use and corrections is not None else None,
        parent=config.parent,
    )
    trained = Predictor(result.network, card)
    return make_trustworthy(trained, config, mnist_train, val_set, measured, parent if config.fine_tunes else None)


def retrofit(
    network: Network,
    card: ModelCard,
    config: TrainConfig,
    data_dir: str | os.PathLike | None = None,
    *,
    keep_detector_of: Predictor | None = None,
) -> Predictor:
    """An already trained classifier, made trustworthy as a new run would be: same weights, new fits;
    with `keep_detector_of`, that predictor's detector instead of a new one (kept_from "recalibrated")."""
    data = load_mnist(data_dir)
    train_set, val_set = split(data.train, config.train_size, config.val_size)
    untrusted = Predictor(network, card.replace(calibration=None, detector=None))
    measured = Measured.of(data, config.held_out_drawings)
    if keep_detector_of is None:
        return make_trustworthy(untrusted, config, train_set, val_set, measured)
    calibrated = make_trustworthy(untrusted, config.replace(detector_epochs=0), train_set, val_set, measured)
    return keep_detector(calibrated, keep_detector_of, "recalibrated", measured)

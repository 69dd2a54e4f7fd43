"""Calibration and detection maths on cases with known answers (issue 11)."""

import numpy as np
import pytest

from model import calibration
from model.card import DetectorCard, ModelCard
from model.network import Network
from model.weights import WeightsError, load_predictor, save


def test_temperature_fit_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (20_000, 10))
    truth = calibration.calibrated(logits, 2.5)  # labels drawn from softmax(logits / 2.5)
    labels = (truth.cumsum(axis=1) < rng.random((len(truth), 1))).sum(axis=1)
    assert calibration.fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.03)
    before, after = calibration.ece(calibration.calibrated(logits, 1.0), labels), calibration.ece(truth, labels)
    assert before > 0.2 and after < 0.015


def test_ece_and_reliability_of_a_hand_made_case():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = np.array([0, 1, 0, 0])  # confidence 0.9 right half the time, 0.6 right always
    points = calibration.reliability(probs, labels, bins=10)
    assert points == [[pytest.approx(0.6), 1.0, 2], [pytest.approx(0.9), 0.5, 2]]
    assert calibration.ece(probs, labels, bins=10) == pytest.approx((0.4 * 2 + 0.4 * 2) / 4)


def test_abstention_threshold_keeps_the_most_answers_within_the_error_target():
    conf = np.array([0.99, 0.98, 0.97, 0.96, 0.95, 0.60])
    probs = np.stack([conf, 1 - conf], axis=1)
    labels = np.array([0, 0, 0, 1, 0, 1])  # the 0.96 answer is wrong, and so is the 0.60 one
    assert calibration.abstention_threshold(probs, labels, target_error=0.0) == pytest.approx(0.97)
    assert calibration.abstention_threshold(probs, labels, target_error=0.2) == pytest.approx(0.95)


def test_auroc():
    assert calibration.auroc(np.array([0.1, 0.2]), np.array([0.3, 0.4])) == 1.0
    assert calibration.auroc(np.array([0.1, 0.2, 0.3]), np.array([0.25, 0.9])) == pytest.approx(5 / 6)
    assert calibration.auroc(np.array([0.5, 0.5]), np.array([0.5])) == pytest.approx(0.5)


def test_a_detector_is_saved_validated_and_loaded(tmp_path):
    rng = np.random.default_rng(0)
    net, det = Network([784, 8, 10]).init(rng), Network([784, 4, 2]).init(rng)
    card = ModelCard(net.sizes, detector=DetectorCard(det.sizes, threshold=0.7, digits=1, negatives=1))
    with pytest.raises(ValueError, match="detector"):
        save(tmp_path / "x.npz", net, card)  # the card promises a detector that is not there
    predictor = load_predictor(save(tmp_path / "m.npz", net, card, det))
    x = rng.random((3, 784), dtype=np.float32)
    np.testing.assert_array_equal(predictor.answer(x).not_digit, det.predict_proba(x)[:, 1])
    assert (
        predictor.card.detector.threshold == 0.7 and predictor.temperature == 1.0 and predictor.uncertain_below == 0.7
    )
    wrong = card.replace(detector=DetectorCard([784, 4, 3], threshold=0.7, digits=1, negatives=1))
    save(tmp_path / "w.npz", net, wrong, Network([784, 4, 3]).init(rng))
    with pytest.raises(WeightsError, match="detector"):
        load_predictor(tmp_path / "w.npz")

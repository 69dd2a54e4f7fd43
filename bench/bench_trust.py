"""Answers people can trust (issue 11): every figure the README quotes, for one weights file.

    python bench/bench_trust.py [weights/default.npz]

Prints MNIST test accuracy and how much of it is flagged; held-out negatives (fonts and kinds
training never saw) flagged as "not a digit" or "not sure", per kind; held-out digit drawings (MNIST
test digits restyled as pad drawings, and the canvas set) flagged, their ECE before and after
calibration, and the accuracy of the answers given with the coverage that leaves; the detector's
AUROC beside max-softmax's.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model import calibration  # noqa: E402
from model.data import load_mnist  # noqa: E402
from model.experiment import Measured  # noqa: E402
from model.negatives import held_out_set  # noqa: E402
from model.trust import normalised_or_none  # noqa: E402
from model.weights import load_predictor  # noqa: E402


def flags(predictor, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probabilities, not a digit, not sure) for each row of x, as the server decides them."""
    answers = predictor.answer(x)
    return answers.probabilities, answers.is_not_digit, answers.uncertain


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", nargs="?", default=str(ROOT / "weights" / "default.npz"))
    ap.add_argument("--drawings", type=int, default=2000, help="MNIST test digits restyled as drawings")
    args = ap.parse_args()
    predictor = load_predictor(args.weights)
    print(f"{args.weights}: temperature {predictor.temperature:.3f}, not sure below {predictor.uncertain_below:.3f}, "
          f"not a digit from {predictor.card.detector.threshold if predictor.card.detector else None}")  # fmt: skip
    measured = Measured.of(load_mnist(), args.drawings)
    x, y = measured.mnist_test
    probs, not_digit, unsure = flags(predictor, x)
    print(f"MNIST test: top-1 {(probs.argmax(1) == y).mean():.2%}; flagged not a digit {not_digit.mean():.2%}")
    held = list(held_out_set())
    read = [normalised_or_none(png) for _, png in held]
    refused = np.array([x is None for x in read])  # "no ink found" or "not one digit": caught, firmly
    nx = np.stack([x for x in read if x is not None])  # what the detector and the AUROC see
    _, n_not_digit, n_unsure = flags(predictor, np.stack([np.zeros(784, np.float32) if x is None else x for x in read]))
    n_not_digit, n_unsure = n_not_digit | refused, n_unsure & ~refused
    caught = n_not_digit | n_unsure
    print(f"held-out negatives ({len(held)}): not a digit {n_not_digit.mean():.1%}, "
          f"not a digit or not sure {caught.mean():.1%}")  # fmt: skip
    kinds = Counter(k for k, _ in held)
    for kind in kinds:
        mask = np.array([k == kind for k, _ in held])
        caught_kind, flagged_kind = caught[mask].mean(), n_not_digit[mask].mean()
        print(f"  {kind:10s} n={mask.sum():3d}  caught {caught_kind:.1%}  (not a digit {flagged_kind:.1%})")
    dx, dy = measured.drawings
    probs, not_digit, unsure = flags(predictor, dx)
    raw = predictor.network.predict_proba(dx)
    given = ~unsure & ~not_digit
    print(f"held-out digit drawings ({len(dy)}): top-1 {(probs.argmax(1) == dy).mean():.2%}; "
          f"flagged not a digit {not_digit.mean():.2%}; ECE {calibration.ece(raw, dy):.2%} -> "
          f"{calibration.ece(probs, dy):.2%}; answers given {given.mean():.1%} of them, "
          f"{(probs.argmax(1) == dy)[given].mean():.2%} right")  # fmt: skip
    wrong = probs.argmax(1) != dy
    print(f"  wrong answers with confidence > 0.9: {(probs.max(1)[wrong] > 0.9).mean():.0%} (uncalibrated "
          f"{(raw.max(1)[wrong] > 0.9).mean():.0%})")  # fmt: skip
    if predictor.detector is not None:
        digits_scores = predictor.answer(dx).not_digit
        print(f"AUROC, held-out negatives vs held-out drawings: detector "
              f"{calibration.auroc(digits_scores, predictor.answer(nx).not_digit):.4f}, max softmax "
              f"{calibration.auroc(1 - raw.max(1), 1 - predictor.network.predict_proba(nx).max(1)):.4f}")  # fmt: skip


if __name__ == "__main__":
    main()

"""Answers people can trust (issues 11 and 22): every figure the README quotes, for each weights file
given, side by side, per family of held-out input.

    python bench/bench_trust.py [weights/cnn.npz weights/default.npz]

Held out means never fitted on: not by the classifier, the calibration or the detector.
- Negatives (model.negatives.held_out_set): other fonts, and kinds training never makes (new shapes,
  pictures, garments), each caught ("not a digit", refused, or "not sure") and "not a digit" alone.
- Digits that do not look like the pad's (model.variants.held_out_set, of MNIST test digits): marker
  and hairline pens, optdigits-style 8x8 bitmaps; each answered (neither flag), right among those,
  and called "not a digit".
- MNIST test, and the held-out digit drawings (MNIST test digits restyled, and the canvas set):
  flagged, ECE before and after calibration, answered and right among the answers; the detector's
  AUROC beside max-softmax's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model import calibration, variants  # noqa: E402
from model.data import load_mnist  # noqa: E402
from model.experiment import Measured  # noqa: E402
from model.negatives import held_out_set  # noqa: E402
from model.trust import normalised_or_none  # noqa: E402
from model.weights import load_predictor  # noqa: E402


def read_all(pngs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """What the server reads of each image (zeros where it refuses one), and which it refused."""
    read = [normalised_or_none(p) for p in pngs]
    refused = np.array([x is None for x in read])
    return np.stack([np.zeros(784, np.float32) if x is None else x for x in read]), refused


def verdicts(predictor, x: np.ndarray, refused: np.ndarray) -> dict[str, np.ndarray]:
    a = predictor.answer(x)
    not_digit = a.is_not_digit | refused
    unsure = a.uncertain & ~not_digit
    return {"probs": a.probabilities, "not_digit": not_digit, "unsure": unsure, "answered": ~not_digit & ~unsure}


def table(title: str, rows: dict[str, list[str]], names: list[str]) -> None:
    print(f"\n{title}")
    print(f"  {'':28s}" + "".join(f"{n:>40s}" for n in names))
    for label, cells in rows.items():
        print(f"  {label:28s}" + "".join(f"{c:>40s}" for c in cells))


def negatives_rows(predictors: dict, held: list[tuple[str, bytes]]) -> dict[str, list[str]]:
    x, refused = read_all([png for _, png in held])
    kinds = np.array([k for k, _ in held])
    rows: dict[str, list[str]] = {}
    for p in predictors.values():
        v = verdicts(p, x, refused)
        caught = v["not_digit"] | v["unsure"]
        for kind in ["all", *dict.fromkeys(kinds)]:
            m = np.ones(len(kinds), bool) if kind == "all" else kinds == kind
            cell = f"{caught[m].mean():6.1%} caught ({v['not_digit'][m].mean():5.1%} n.a.d.)"
            rows.setdefault(f"{kind} (n={m.sum()})", []).append(cell)
    return rows


def digits_rows(predictors: dict, held: list[tuple[str, bytes, int]]) -> dict[str, list[str]]:
    x, refused = read_all([png for _, png, _ in held])
    kinds, labels = np.array([k for k, _, _ in held]), np.array([y for _, _, y in held])
    rows: dict[str, list[str]] = {}
    for p in predictors.values():
        v = verdicts(p, x, refused)
        right = v["probs"].argmax(1) == labels
        for kind in dict.fromkeys(kinds):
            m = kinds == kind
            a = v["answered"][m]
            cell = f"{a.mean():5.1%} ans, {right[m][a].mean():6.2%} right, {v['not_digit'][m].mean():4.1%} n.a.d."
            rows.setdefault(f"{kind} (n={m.sum()})", []).append(cell)
    return rows


def drawings_rows(predictors: dict, measured: Measured) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    (tx, ty), (dx, dy) = measured.mnist_test, measured.drawings
    for p in predictors.values():
        t = verdicts(p, tx, np.zeros(len(ty), bool))
        rows.setdefault("MNIST test top-1", []).append(f"{(t['probs'].argmax(1) == ty).mean():.2%}")
        rows.setdefault("MNIST test not a digit", []).append(f"{t['not_digit'].mean():.2%}")
        d = verdicts(p, dx, np.zeros(len(dy), bool))
        right, raw = d["probs"].argmax(1) == dy, p.network.predict_proba(dx)
        rows.setdefault(f"drawings (n={len(dy)}) not a digit", []).append(f"{d['not_digit'].mean():.2%}")
        rows.setdefault("drawings answered, right among", []).append(
            f"{d['answered'].mean():.1%}, {right[d['answered']].mean():.2%} (all {right.mean():.2%})"
        )
        rows.setdefault("drawings ECE before -> after", []).append(
            f"{calibration.ece(raw, dy):.2%} -> {calibration.ece(d['probs'], dy):.2%}"
        )
    return rows


def auroc_rows(predictors: dict, measured: Measured, held: list[tuple[str, bytes]]) -> dict[str, list[str]]:
    nx, refused = read_all([png for _, png in held])
    nx, dx = nx[~refused], measured.drawings[0]
    rows: dict[str, list[str]] = {}
    for p in predictors.values():
        raw_d, raw_n = p.network.predict_proba(dx), p.network.predict_proba(nx)
        softmax = calibration.auroc(1 - raw_d.max(1), 1 - raw_n.max(1))
        det = calibration.auroc(p.answer(dx).not_digit, p.answer(nx).not_digit) if p.detector else float("nan")
        rows.setdefault("detector / max softmax", []).append(f"{det:.4f} / {softmax:.4f}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", nargs="*", default=[str(ROOT / "weights" / w) for w in ("cnn.npz", "default.npz")])
    ap.add_argument("--drawings", type=int, default=2000, help="MNIST test digits restyled as drawings")
    ap.add_argument("--variants", type=int, default=500, help="MNIST test digits in each held-out variant")
    args = ap.parse_args()
    predictors = {Path(w).stem: load_predictor(w) for w in args.weights}
    names = list(predictors)
    for name, p in predictors.items():
        det = p.card.detector
        print(f"{name}: temperature {p.temperature:.3f}, not sure below {p.uncertain_below:.3f}, "
              f"not a digit from {det.threshold if det else None}")  # fmt: skip
    data = load_mnist()
    measured = Measured.of(data, args.drawings)
    negatives = list(held_out_set())
    tx, ty = data.test.x[-args.variants :], data.test.y[-args.variants :]  # the restyled drawings use the first
    table("MNIST test and held-out digit drawings", drawings_rows(predictors, measured), names)
    table("held-out negatives, per family", negatives_rows(predictors, negatives), names)
    unlike = list(variants.held_out_set(tx, ty))
    table("held-out digits unlike the pad's, per family", digits_rows(predictors, unlike), names)
    table("AUROC, held-out negatives against held-out drawings", auroc_rows(predictors, measured, negatives), names)


if __name__ == "__main__":
    main()

"""Confidence that means what it says: temperature scaling, calibration error, and when to abstain.

Temperature scaling (Guo et al. 2017) divides the logits by one scalar T fitted by negative log
likelihood on held-out data: the ranking of the answers is unchanged, their confidence is not.
"""

from __future__ import annotations

import math

import numpy as np

from model.functional import softmax


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log likelihood of the labels under softmax(logits / T)."""
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))  # (m, k)
    return float(-log_p[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, lo: float = 0.05, hi: float = 20.0) -> float:
    """The T in [lo, hi] minimising nll: golden-section search over log T (nll is unimodal in T)."""
    logits = np.asarray(logits, np.float64)
    a, b = math.log(lo), math.log(hi)
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = nll(logits, labels, math.exp(c)), nll(logits, labels, math.exp(d))
    for _ in range(60):  # (hi/lo) shrinks by 0.618 a step: far below 1e-6 relative
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = nll(logits, labels, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = nll(logits, labels, math.exp(d))
    return math.exp((a + b) / 2)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> list[list[float]]:
    """[mean confidence, accuracy, count] of each non-empty confidence bin of equal width."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    out = []
    for b in range(bins):
        inside = which == b
        if inside.any():
            out.append([float(conf[inside].mean()), float(correct[inside].mean()), int(inside.sum())])
    return out


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error: the count-weighted gap between confidence and accuracy per bin."""
    points = reliability(probs, labels, bins)
    n = sum(p[2] for p in points)
    return float(sum(abs(c - a) * k for c, a, k in points) / max(n, 1))


def abstention_threshold(probs: np.ndarray, labels: np.ndarray, target_error: float) -> float:
    """The lowest confidence threshold whose answers (confidence >= it) are wrong at most target_error
    of the time: answers under it are "not sure"."""
    conf = probs.max(axis=1)
    wrong = probs.argmax(axis=1) != labels
    order = np.argsort(-conf, kind="stable")
    errors = np.cumsum(wrong[order]) / np.arange(1, len(order) + 1)  # error rate of the k most confident
    ok = np.flatnonzero(errors <= target_error)
    if len(ok) == 0:
        return 1.0
    k = ok[-1]  # keep the most answers
    return float(conf[order][k])


def coverage_curve(probs: np.ndarray, labels: np.ndarray, points: int = 21) -> list[list[float]]:
    """[coverage, accuracy of the answers kept] when only the most confident fraction is answered."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    order = np.argsort(-conf, kind="stable")
    out = []
    for coverage in np.linspace(0.5, 1.0, points):
        k = max(1, round(coverage * len(order)))
        out.append([round(float(coverage), 3), float(correct[order][:k].mean())])
    return out


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Probability that a random negative scores higher than a random positive (ties count half)."""
    scores = np.concatenate([positive, negative])
    ranks = np.empty(len(scores))
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    ranks[order] = np.arange(1, len(scores) + 1)
    for v in np.unique(sorted_scores):  # average ranks of ties
        tied = scores == v
        ranks[tied] = ranks[tied].mean()
    n_neg, n_pos = len(negative), len(positive)
    return float((ranks[n_pos:].sum() - n_neg * (n_neg + 1) / 2) / (n_neg * n_pos))


def calibrated(logits: np.ndarray, temperature: float) -> np.ndarray:
    return softmax(logits / temperature)

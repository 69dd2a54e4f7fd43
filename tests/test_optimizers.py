"""Optimizers against their update rules written out by hand, and the learning-rate schedules."""

import math

import numpy as np
import pytest

from model.optimizers import Schedule, make_optimizer


def _run(name, steps, lr, **opts):
    rng = np.random.default_rng(0)
    p = rng.standard_normal(200_000)  # more than one Adam chunk
    grads = [rng.standard_normal(p.size) for _ in range(steps)]
    opt = make_optimizer(name, p.size, np.float64, **opts)
    params = p.copy()
    for g in grads:
        opt.step(params, g, lr)
    return p, grads, params


def test_sgd_is_w_minus_alpha_dw():
    p, grads, out = _run("sgd", 3, 0.1)
    for g in grads:
        p = p - 0.1 * g
    np.testing.assert_allclose(out, p, rtol=1e-12)


def test_momentum_matches_its_rule():
    p, grads, out = _run("momentum", 3, 0.05, momentum=0.9)
    v = np.zeros_like(p)
    for g in grads:
        v = 0.9 * v + g
        p = p - 0.05 * v
    np.testing.assert_allclose(out, p, rtol=1e-12)


def test_rmsprop_matches_its_rule():
    p, grads, out = _run("rmsprop", 3, 0.01)
    s = np.zeros_like(p)
    for g in grads:
        s = 0.9 * s + 0.1 * g * g
        p = p - 0.01 * g / (np.sqrt(s) + 1e-8)
    np.testing.assert_allclose(out, p, rtol=1e-10)


def test_adam_matches_the_paper_in_chunks():
    p, grads, out = _run("adam", 4, 1e-3)
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads, 1):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        lr_t = 1e-3 * math.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        p = p - lr_t * m / (np.sqrt(v) + 1e-8)
    np.testing.assert_allclose(out, p, rtol=1e-10)


def test_unknown_optimizer_and_schedule_are_refused():
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("lbfgs", 10, np.float32)
    with pytest.raises(ValueError, match="unknown schedule"):
        Schedule("linear", 0.1, 10)


def test_schedules():
    assert Schedule("constant", 0.1, 100)(50) == 0.1
    cosine = Schedule("cosine", 1e-3, 101, lr_min=1e-5)
    assert cosine(0) == pytest.approx(1e-3)
    assert cosine(50) == pytest.approx((1e-3 + 1e-5) / 2)
    assert cosine(100) == pytest.approx(1e-5)
    step = Schedule("step", 0.1, 100, steps_per_epoch=10, step_epochs=3, gamma=0.5)
    rates = [step(s) for s in range(100)]
    assert rates[29] == pytest.approx(0.1) and rates[30] == pytest.approx(0.05) and rates[60] == pytest.approx(0.025)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_weight_decay_is_decoupled_and_shrinks_only_what_it_is_given(name):
    rng = np.random.default_rng(0)
    params = rng.standard_normal(100)
    grads = rng.standard_normal(100)
    plain, decayed = params.copy(), params.copy()
    make_optimizer(name, 100, np.float64).step(plain, grads, 0.1)
    weights = [decayed[:60]]  # a view, as a network's W are views into its flat params
    make_optimizer(name, 100, np.float64).with_weight_decay(0.5, weights).step(decayed, grads, 0.1)
    # After the optimizer's own update, the given weights shrink by lr * decay; the rest (biases) do not.
    np.testing.assert_allclose(decayed[:60], plain[:60] * (1 - 0.1 * 0.5), rtol=1e-12)
    np.testing.assert_array_equal(decayed[60:], plain[60:])

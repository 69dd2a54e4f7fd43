"""Optimizers over one flat parameter vector, and learning-rate schedules.

Each optimizer updates the network's flat `params` from its flat `grads` in place, so a step is a
handful of ufunc calls however many layers there are. Adam works in chunks that fit in L2 cache.
Weight decay is decoupled (AdamW-style): after the update, the arrays named in `decay` (the weight
matrices, not the biases) shrink by lr * weight_decay, whatever the optimizer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

_CHUNK = 1 << 16  # elements per Adam chunk: 4 buffers x 256 KiB stay in L2
_FLUSH_EVERY = 100  # steps between flushes of subnormal moments (see Adam.step)


class Optimizer:
    def __init__(self, n_params: int, dtype: np.dtype) -> None:
        self.n_params = n_params
        self.dtype = dtype
        self.t = 0
        self.weight_decay = 0.0
        self.decay: Sequence[np.ndarray] = ()  # views into params that weight decay shrinks

    def with_weight_decay(self, weight_decay: float, decay: Sequence[np.ndarray]) -> Optimizer:
        self.weight_decay, self.decay = weight_decay, decay
        return self

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        """One update of params from grads, then the decoupled weight decay."""
        self.t += 1
        self._update(params, grads, lr)
        if self.weight_decay:
            for W in self.decay:  # shrink the weights directly, not through the gradient
                W *= 1 - lr * self.weight_decay

    def _update(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Plain gradient descent: W := W - alpha dW, the seed network's rule."""

    def _update(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        params -= np.multiply(grads, lr, dtype=params.dtype)


class Momentum(Optimizer):
    """Heavy-ball momentum: v := mu v + g;  p := p - lr v."""

    def __init__(self, n_params: int, dtype: np.dtype, momentum: float = 0.9) -> None:
        super().__init__(n_params, dtype)
        self.momentum = momentum
        self.v = np.zeros(n_params, dtype)
        self._tmp = np.empty(n_params, dtype)

    def _update(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        self.v *= self.momentum
        self.v += grads
        np.multiply(self.v, lr, out=self._tmp)
        params -= self._tmp


class RMSProp(Optimizer):
    """s := rho s + (1 - rho) g^2;  p := p - lr g / (sqrt(s) + eps)."""

    def __init__(self, n_params: int, dtype: np.dtype, rho: float = 0.9, eps: float = 1e-8) -> None:
        super().__init__(n_params, dtype)
        self.rho, self.eps = rho, eps
        self.s = np.zeros(n_params, dtype)
        self._tmp = np.empty(n_params, dtype)

    def _update(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        tmp = self._tmp
        self.s *= self.rho
        np.multiply(grads, grads, out=tmp)
        tmp *= 1 - self.rho
        self.s += tmp
        np.sqrt(self.s, out=tmp)
        tmp += self.eps
        np.divide(grads, tmp, out=tmp)
        tmp *= lr
        params -= tmp


class Adam(Optimizer):
    """Adam (Kingma & Ba), in the paper's efficient form:

    m := b1 m + (1 - b1) g;  v := b2 v + (1 - b2) g^2
    p := p - lr_t m / (sqrt(v) + eps),  lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)
    """

    def __init__(
        self,
        n_params: int,
        dtype: np.dtype,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
    ) -> None:
        super().__init__(n_params, dtype)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m = np.zeros(n_params, dtype)
        self.v = np.zeros(n_params, dtype)
        self._tmp = np.empty(min(n_params, _CHUNK), dtype)

    def _update(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        b1, b2 = self.beta1, self.beta2
        lr_t = lr * math.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        for start in range(0, self.n_params, _CHUNK):
            end = min(start + _CHUNK, self.n_params)
            g, m, v, p = (
                grads[start:end],
                self.m[start:end],
                self.v[start:end],
                params[start:end],
            )
            t = self._tmp[: end - start]
            m *= b1
            np.multiply(g, 1 - b1, out=t)
            m += t
            v *= b2
            np.multiply(g, g, out=t)
            t *= 1 - b2
            v += t
            np.sqrt(v, out=t)
            t += self.eps
            np.divide(m, t, out=t)
            t *= lr_t
            p -= t
        if self.t % _FLUSH_EVERY == 0:
            # Moments of pixels that are almost never inked decay into subnormal floats, and every
            # ufunc on a subnormal takes a slow microcode path. NumPy cannot set flush-to-zero, so
            # do it by hand; values this small change no update.
            for buf in (self.m, self.v):
                buf[np.abs(buf) < 1e-30] = 0


_MAKERS: dict[str, Callable[..., Optimizer]] = {
    "sgd": lambda n, dtype, o: SGD(n, dtype),
    "momentum": lambda n, dtype, o: Momentum(n, dtype, momentum=o.get("momentum", 0.9)),
    "rmsprop": lambda n, dtype, o: RMSProp(n, dtype, rho=o.get("rho", 0.9), eps=o.get("eps", 1e-8)),
    "adam": lambda n, dtype, o: Adam(
        n, dtype, beta1=o.get("beta1", 0.9), beta2=o.get("beta2", 0.999), eps=o.get("eps", 1e-8)
    ),
}
OPTIMIZERS = tuple(_MAKERS)


def make_optimizer(name: str, n_params: int, dtype: np.dtype, **options: float) -> Optimizer:
    if name not in _MAKERS:
        raise ValueError(f"unknown optimizer {name!r}; choose from {OPTIMIZERS}")
    return _MAKERS[name](n_params, dtype, options)


def _constant(s: Schedule, step: int) -> float:
    return s.base


def _cosine(s: Schedule, step: int) -> float:
    progress = min(step / max(s.total_steps - 1, 1), 1.0)
    return s.lr_min + 0.5 * (s.base - s.lr_min) * (1 + math.cos(math.pi * progress))


def _step(s: Schedule, step: int) -> float:
    return s.base * s.gamma ** (step // (s.steps_per_epoch * s.step_epochs))


_SCHEDULES = {"constant": _constant, "cosine": _cosine, "step": _step}
SCHEDULES = tuple(_SCHEDULES)


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule over one run: `schedule(step)` is the rate of step `step` (0-based)."""

    name: str
    base: float
    total_steps: int
    lr_min: float = 0.0  # where "cosine" ends
    steps_per_epoch: int = 1
    step_epochs: int = 10  # "step" multiplies the rate by gamma every step_epochs epochs
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.name not in _SCHEDULES:
            raise ValueError(f"unknown schedule {self.name!r}; choose from {SCHEDULES}")

    def __call__(self, step: int) -> float:
        return _SCHEDULES[self.name](self, step)

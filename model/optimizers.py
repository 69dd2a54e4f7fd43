"""Optimizers over one flat parameter vector, and learning-rate schedules.

Each optimizer updates the network's flat `params` from its flat `grads` in place, so a step is a
handful of ufunc calls however many layers there are. Adam works in chunks that fit in L2 cache.
"""

from __future__ import annotations

import math

import numpy as np

OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")
SCHEDULES = ("constant", "cosine", "step")

_CHUNK = 1 << 16  # elements per Adam chunk: 4 buffers x 256 KiB stay in L2
_FLUSH_EVERY = 100  # steps between flushes of subnormal moments (see Adam.step)


class Optimizer:
    def __init__(self, n_params: int, dtype: np.dtype) -> None:
        self.n_params = n_params
        self.dtype = dtype
        self.t = 0

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Plain gradient descent: W := W - alpha dW, the seed network's rule."""

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        self.t += 1
        params -= np.multiply(grads, lr, dtype=params.dtype)


class Momentum(Optimizer):
    """Heavy-ball momentum: v := mu v + g;  p := p - lr v."""

    def __init__(self, n_params: int, dtype: np.dtype, momentum: float = 0.9) -> None:
        super().__init__(n_params, dtype)
        self.momentum = momentum
        self.v = np.zeros(n_params, dtype)
        self._tmp = np.empty(n_params, dtype)

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        self.t += 1
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

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        self.t += 1
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

    def step(self, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        self.t += 1
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


def make_optimizer(name: str, n_params: int, dtype: np.dtype, **options: float) -> Optimizer:
    if name == "sgd":
        return SGD(n_params, dtype)
    if name == "momentum":
        return Momentum(n_params, dtype, momentum=options.get("momentum", 0.9))
    if name == "rmsprop":
        return RMSProp(n_params, dtype, rho=options.get("rho", 0.9), eps=options.get("eps", 1e-8))
    if name == "adam":
        return Adam(
            n_params,
            dtype,
            beta1=options.get("beta1", 0.9),
            beta2=options.get("beta2", 0.999),
            eps=options.get("eps", 1e-8),
        )
    raise ValueError(f"unknown optimizer {name!r}; choose from {OPTIMIZERS}")


def learning_rate(
    schedule: str,
    base: float,
    step: int,
    total_steps: int,
    *,
    lr_min: float = 0.0,
    steps_per_epoch: int = 1,
    step_epochs: int = 10,
    gamma: float = 0.1,
) -> float:
    """Learning rate for optimizer step `step` (0-based) of `total_steps`."""
    if schedule == "constant":
        return base
    if schedule == "cosine":
        progress = min(step / max(total_steps - 1, 1), 1.0)
        return lr_min + 0.5 * (base - lr_min) * (1 + math.cos(math.pi * progress))
    if schedule == "step":
        return base * gamma ** (step // (steps_per_epoch * step_epochs))
    raise ValueError(f"unknown schedule {schedule!r}; choose from {SCHEDULES}")

"""A training batch worked in equal parts, each on a replica of the network, on as many cores.

NumPy runs every elementwise step (pooling, batch norm, the copies of im2col and col2im) on one
core, and BLAS splits only the matrix products, which at this network's sizes leaves the second core
idle a third of the time. Two halves of a batch on two replicas, each with one BLAS thread, keep both
cores busy throughout: the shipped CNN's step went from 22.4 to 15.8 ms per batch of 128.

Each part is its own batch-norm batch ("ghost batch norm", Hoffer et al. 2017): statistics over 64
images rather than 128, which trains as well (issue 23 has the figures). The gradients of the parts
are averaged, weighted by their sizes; the running statistics too, after every step, so every
replica carries the same ones. Each part draws its dropout masks from a generator of its own, spawned
from the run's in a fixed order, and the parts' results are combined in a fixed order: a seed
reproduces a run exactly, whatever the number of threads.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from model.layers import Dropout
from model.network import BatchResult, Network

T = TypeVar("T")


def made_ahead(items: Iterator[T]) -> Iterator[T]:
    """`items`, each made on a thread of its own while the one before is used: the next batch's
    distortions (3 ms a batch of 128) overlap this batch's step. One thread makes them all, in order, so
    the generator they draw from is drawn in the same order as without it."""
    done = object()
    with ThreadPoolExecutor(1, thread_name_prefix="next-batch") as pool:
        coming = pool.submit(next, items, done)
        while (item := coming.result()) is not done:
            coming = pool.submit(next, items, done)
            yield item  # type: ignore[misc]


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class BatchParts:
    """backprop() over `parts` parts of each batch; fills `net.grads` as Network.backprop does."""

    def __init__(self, net: Network, parts: int, rng: np.random.Generator, threads: int | None = None) -> None:
        self.net = net
        self.replicas = [net] + [net.replica() for _ in range(parts - 1)]
        if parts > 1:
            for replica, child in zip(self.replicas, rng.spawn(parts), strict=True):
                for layer in replica.layers:
                    if isinstance(layer, Dropout):
                        layer.rng = child
        threads = min(parts, cores()) if threads is None else threads
        # the calling thread works the first part itself
        self.pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="batch-part") if threads > 1 else None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()

    def backprop(self, X: np.ndarray, y: np.ndarray) -> BatchResult:
        if len(self.replicas) == 1:
            return self.net.backprop(X, y)
        bounds = np.linspace(0, len(X), len(self.replicas) + 1).astype(int)
        parts = [(r, X[a:b], y[a:b]) for r, a, b in zip(self.replicas, bounds[:-1], bounds[1:], strict=True)]
        if self.pool is not None:
            others = [self.pool.submit(r.backprop, x, labels) for r, x, labels in parts[1:]]
            first = parts[0][0].backprop(parts[0][1], parts[0][2])
            results = [first, *(f.result() for f in others)]
        else:
            results = [r.backprop(x, labels) for r, x, labels in parts]
        weights = np.diff(bounds) / len(X)
        grads, state = self.net.grads, self.net.state
        grads *= weights[0]  # the first replica is the network itself: its gradient is already there
        for replica, w in zip(self.replicas[1:], weights[1:], strict=True):
            grads += w * replica.grads
        state[...] = sum(w * r.state for r, w in zip(self.replicas, weights, strict=True))
        for replica in self.replicas[1:]:
            replica.state[...] = state
        loss = float(sum(w * r.loss for r, w in zip(results, weights, strict=True)))
        return BatchResult(loss, np.concatenate([r.probabilities for r in results]))

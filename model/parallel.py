"""A training batch worked in equal parts, each on a replica of the network, in processes of their own.

NumPy runs every elementwise step (pooling, batch norm, the copies of im2col and col2im) on one
core, and BLAS splits only the matrix products, which at this network's sizes leaves the second core
idle a third of the time. Two halves of a batch on two replicas, each with one BLAS thread, keep both
cores busy throughout. The replicas run in processes, not threads: two threads of one process hand
Python's lock back and forth at every NumPy call, and measured here that cost a third of a step (a
half of the shipped CNN's batch took 17.7 ms alone, 24.6 ms beside another thread, 19.3 ms beside
another process).

The weights live in shared memory that every process maps, so an optimizer step in this process
moves all replicas; each replica's gradients, batch-norm state, inputs and outputs are shared
arrays too, so a step sends the worker only the number of rows it has and gets back its loss.

Each part is its own batch-norm batch ("ghost batch norm", Hoffer et al. 2017): statistics over 64
images rather than 128, which trains as well (issue 23 has the figures). The gradients of the parts
are averaged, weighted by their sizes; the running statistics too, after every step, so every
replica carries the same ones. Each part draws its dropout masks from a generator of its own, spawned
from the run's in a fixed order, and the parts' results are combined in a fixed order: a seed
reproduces a run exactly, in processes or all in this one.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np
from threadpoolctl import threadpool_limits

from model.layers import Dropout
from model.network import BatchResult, Network

T = TypeVar("T")
Layout = dict[str, tuple[int, tuple[int, ...], str]]  # name -> (byte offset, shape, dtype)


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


class SharedArrays:
    """Named arrays in one file of shared memory that other processes map by its path.

    The file is removed as soon as every process has mapped it (`forget`), so nothing is left behind
    in /dev/shm even when a process is killed; the memory goes when the last mapping does."""

    def __init__(self, layout: Layout, path: str | None = None) -> None:
        self.layout = layout
        ends = [offset + int(np.prod(shape)) * np.dtype(dt).itemsize for offset, shape, dt in layout.values()]
        size = max(ends, default=1)
        if path is None:
            folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
            fd, path = tempfile.mkstemp(prefix="digits-parts-", dir=folder)
            os.ftruncate(fd, size)
        else:
            fd = os.open(path, os.O_RDWR)
        self.path = path
        try:
            self.map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.arrays = {
            name: np.ndarray(shape, np.dtype(dt), buffer=self.map, offset=offset)
            for name, (offset, shape, dt) in layout.items()
        }

    @staticmethod
    def plan(shapes: dict[str, tuple[tuple[int, ...], np.dtype]]) -> Layout:
        """A layout for arrays of these shapes, each starting on a 64-byte cache line."""
        layout, offset = {}, 0
        for name, (shape, dtype) in shapes.items():
            layout[name] = (offset, shape, np.dtype(dtype).str)
            offset += -(-int(np.prod(shape)) * np.dtype(dtype).itemsize // 64) * 64
        return layout

    def of_part(self, index: int) -> dict[str, np.ndarray]:
        """Replica `index`'s arrays (see _part_arrays), by their short names."""
        prefix = f"{index}."
        return {name.removeprefix(prefix): a for name, a in self.arrays.items() if name.startswith(prefix)}

    def forget(self) -> None:
        """Remove the file; mappings made before stay valid."""
        if self.path is not None:
            os.unlink(self.path)
            self.path = None


def _part_arrays(net: Network, index: int, rows: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """What replica `index` shares: its gradients, state, and one part's inputs, labels and outputs."""
    return {
        f"{index}.grads": (net.grads.shape, net.dtype),
        f"{index}.state": (net.state.shape, net.dtype),
        f"{index}.x": ((rows, net.n_inputs), net.dtype),
        f"{index}.y": ((rows,), np.dtype(np.intp)),
        f"{index}.probabilities": ((rows, net.layers[-1].units), net.dtype),
    }


def _work_parts(inbox: BinaryIO, outbox: BinaryIO) -> None:
    """A worker process (python -m model.parallel): its replica's backprop on each part it is sent,
    until it is sent None or its parent goes."""
    spec, dtype, trainable_from, path, layout, index, rng = pickle.load(inbox)
    shared = SharedArrays(layout, path)
    a = shared.of_part(index)
    net = Network(spec, dtype)
    net.adopt(shared.arrays["params"], a["grads"], a["state"])
    net.trainable_from = trainable_from
    _set_dropout_rng(net, rng)

    def send(answer: Any) -> None:
        pickle.dump(answer, outbox)
        outbox.flush()

    send("ready")
    with threadpool_limits(1):
        while (rows := pickle.load(inbox)) is not None:
            try:
                result = net.backprop(a["x"][:rows], a["y"][:rows])
                a["probabilities"][:rows] = result.probabilities
                send(result.loss)
            except MemoryError as e:  # the parent's job says "out of memory", as if it had run out itself
                send(e)
            except Exception:
                send(traceback.format_exc())


class PartWorker:
    """One replica in a process of its own, fed through shared arrays; a fresh interpreter
    (`python -m model.parallel`), not a fork, since the process that trains may be running threads."""

    def __init__(self, net: Network, shared: SharedArrays, index: int, rng: np.random.Generator) -> None:
        self.name = f"batch part {index}"
        self.arrays = shared.of_part(index)
        self.grads, self.state = self.arrays["grads"], self.arrays["state"]
        self.state[...] = net.state
        root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "model.parallel"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        self._send((net.spec, net.dtype.name, net.trainable_from, shared.path, shared.layout, index, rng))

    def ready(self) -> None:
        self._receive()

    def start(self, x: np.ndarray, y: np.ndarray) -> None:
        self.arrays["x"][: len(x)] = x
        self.arrays["y"][: len(y)] = y
        self.rows = len(x)
        self._send(self.rows)

    def result(self) -> BatchResult:
        return BatchResult(self._receive(), self.arrays["probabilities"][: self.rows])

    def _send(self, message: Any) -> None:
        try:
            pickle.dump(message, self.process.stdin)
            self.process.stdin.flush()
        except OSError:
            raise self._ended() from None

    def _receive(self) -> Any:
        try:
            answer = pickle.load(self.process.stdout)
        except (EOFError, OSError, pickle.UnpicklingError):
            raise self._ended() from None
        if isinstance(answer, MemoryError):
            raise MemoryError(f"{self.name}: {answer}")
        if isinstance(answer, str) and answer != "ready":
            raise RuntimeError(f"{self.name} failed:\n{answer}")
        return answer

    def _ended(self) -> RuntimeError:
        return RuntimeError(f"the process working {self.name} ended unexpectedly (exit code {self.process.poll()})")

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._send(None)
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()


class BatchParts:
    """backprop() over `parts` parts of each batch; fills `net.grads` as Network.backprop does.

    With `processes` (the default on a machine of several cores) the first part runs here and every
    other in a worker process; without, all run here in turn, with the same results."""

    def __init__(
        self, net: Network, parts: int, rng: np.random.Generator, rows: int, processes: bool | None = None
    ) -> None:
        self.net, self.parts = net, parts
        self.scratch = np.empty_like(net.grads)  # another part's gradient, weighted
        self.processes = parts > 1 and (cores() > 1 if processes is None else processes)
        children = rng.spawn(parts) if parts > 1 else []
        self.workers: list[PartWorker] = []
        self.replicas: list[Network] = [net]
        self.shared: SharedArrays | None = None
        if parts == 1:  # dropout keeps the run's generator
            return
        if not self.processes:
            self.replicas += [net.replica() for _ in range(parts - 1)]
            for replica, child in zip(self.replicas, children, strict=True):
                _set_dropout_rng(replica, child)
            return
        _set_dropout_rng(net, children[0])
        shapes = {"params": (net.params.shape, net.dtype)}
        for index in range(1, parts):
            shapes |= _part_arrays(net, index, -(-rows // parts))
        self.shared = shared = SharedArrays(SharedArrays.plan(shapes))
        try:
            shared.arrays["params"][...] = net.params
            net.adopt(shared.arrays["params"], net.grads, net.state)
            self.workers = [PartWorker(net, shared, i, children[i]) for i in range(1, parts)]
            for worker in self.workers:
                worker.ready()
        except BaseException:
            self.close()
            raise
        finally:
            shared.forget()

    def close(self) -> None:
        """Stop the workers and give the network back weights of its own (the shared ones go with them)."""
        for worker in self.workers:
            worker.stop()
        self.workers = []
        if self.shared is not None:
            self.net.adopt(self.net.params.copy(), self.net.grads, self.net.state)
            self.shared = None

    def backprop(self, X: np.ndarray, y: np.ndarray) -> BatchResult:
        if self.parts == 1:
            return self.net.backprop(X, y)
        bounds = np.linspace(0, len(X), self.parts + 1).astype(int)
        pieces = [(X[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        # Python floats, so that the products stay float32: NumPy's float64 scalars made every step's
        # gradient a float64 temporary, 0.35 ms of a 10 ms step here (0.07 ms now)
        weights = [float(w) for w in np.diff(bounds) / len(X)]
        grads, state = self.net.grads, self.net.state
        if self.processes:
            for worker, (x, labels) in zip(self.workers, pieces[1:], strict=True):
                worker.start(x, labels)
            first = self.net.backprop(*pieces[0])
            grads *= weights[0]  # while the other parts finish
            results = [first, *(worker.result() for worker in self.workers)]
            others = [(w.grads, w.state) for w in self.workers]
        else:
            results = [r.backprop(x, labels) for r, (x, labels) in zip(self.replicas, pieces, strict=True)]
            others = [(r.grads, r.state) for r in self.replicas[1:]]
            grads *= weights[0]  # the first part ran on the network itself: its gradient is already there
        for (g, _), w in zip(others, weights[1:], strict=True):
            grads += np.multiply(g, w, out=self.scratch)
        state *= weights[0]
        for (_, s), w in zip(others, weights[1:], strict=True):
            state += w * s
        for _, s in others:
            s[...] = state
        loss = float(sum(w * r.loss for r, w in zip(results, weights, strict=True)))
        return BatchResult(loss, np.concatenate([r.probabilities for r in results]))


def _set_dropout_rng(net: Network, rng: np.random.Generator) -> None:
    for layer in net.layers:
        if isinstance(layer, Dropout):
            layer.rng = rng


if __name__ == "__main__":
    answers = os.fdopen(os.dup(1), "wb")  # the parent reads answers here; anything printed goes to stderr
    os.dup2(2, 1)
    # The parent gone (its end of the pipe closed) or a Ctrl-C meant for it: nothing to say, just stop.
    with contextlib.suppress(EOFError, BrokenPipeError, KeyboardInterrupt):
        _work_parts(sys.stdin.buffer, answers)

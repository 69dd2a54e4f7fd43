"""A training batch worked in equal parts, each on a replica of the network, in processes of their own.

NumPy runs every elementwise step (pooling, batch norm, the copies of im2col and col2im) on one
core, and BLAS splits only the matrix products, which at this network's sizes leaves the second core
idle a third of the time. Two halves of a batch on two replicas, each with one BLAS thread, keep both
cores busy throughout. The replicas run in processes, not threads: two threads of one process hand
Python's lock back and forth at every NumPy call, and measured here that cost a third of a step (a
half of the shipped CNN's batch took 17.7 ms alone, 24.6 ms beside another thread, 19.3 ms beside
another process).

The weights live in shared memory that every process maps, so one optimizer step moves all
replicas; each replica's gradients, batch-norm state, inputs and outputs are shared arrays too, so a
step sends a worker only its row count (and the step's learning rate) and gets back its loss. The
first worker combines the parts and applies the update, while the process that trains counts the
step and reads the next batch: done here, the update left the other core idle for a millisecond of
every 13 ms step. Counters in the shared memory say which part and which update is done, and a
process about to wait watches them for a few milliseconds before it sleeps (waking took 0.2 ms).

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
import time
import traceback
from collections.abc import Callable, Iterator
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
    """What replica `index` shares: its gradients and state, and (for a worker) one part's inputs,
    labels and outputs. The first part's are the network's own, which run in this process."""
    arrays = {f"{index}.grads": (net.grads.shape, net.dtype), f"{index}.state": (net.state.shape, net.dtype)}
    if index > 0:
        arrays |= {
            f"{index}.x": ((rows, net.n_inputs), net.dtype),
            f"{index}.y": ((rows,), np.dtype(np.intp)),
            f"{index}.probabilities": ((rows, net.layers[-1].units), net.dtype),
        }
    return arrays


def combine(grads: list[np.ndarray], states: list[np.ndarray], weights: list[float], scratch: np.ndarray) -> None:
    """The batch's gradient and batch-norm state from its parts', weighted by their sizes, into the
    first part's arrays (the network's own); every other part's state then equals it. The same sums
    in the same order wherever it runs, so a seed reproduces a run in processes or not. `weights` are
    Python floats, so that the products stay float32 (NumPy's float64 scalars made the whole gradient
    a float64 temporary every step: 0.35 ms of a 10 ms step here)."""
    grads[0] *= weights[0]
    for g, w in zip(grads[1:], weights[1:], strict=True):
        grads[0] += np.multiply(g, w, out=scratch)
    states[0] *= weights[0]
    for s, w in zip(states[1:], weights[1:], strict=True):
        states[0] += w * s
    for s in states[1:]:
        s[...] = states[0]


def wait_for(ready: Callable[[], bool], alive: Callable[[], bool]) -> bool:
    """Until ready() (True) or not alive() (False). It watches for a few milliseconds, which is as long
    as the parts of a step take to end after each other, then looks every 0.2 ms: a process asleep in a
    read took 0.2 ms to wake here, of a 13 ms step."""
    until = time.perf_counter() + 0.005
    while not ready():
        if time.perf_counter() > until:
            if not alive():
                return False
            time.sleep(0.0002)
    return True


def _work_parts(inbox: BinaryIO, outbox: BinaryIO) -> None:
    """A worker process (python -m model.parallel): its replica's backprop on each part it is sent,
    until it is sent None or its parent goes. The first worker then also combines the parts and applies
    the optimizer's update, while the process that trains goes on with the next batch."""
    spec, dtype, trainable_from, path, layout, index, parts, rng, config = pickle.load(inbox)
    shared = SharedArrays(layout, path)
    a = shared.of_part(index)
    net = Network(spec, dtype)
    net.adopt(shared.arrays["params"], a["grads"], a["state"])
    net.trainable_from = trainable_from
    _set_dropout_rng(net, rng)
    done, updated, parent = shared.arrays["done"], shared.arrays["updated"], os.getppid()
    optimizer = config.optimizer_for(net) if index == 1 and config is not None else None
    every, scratch = [shared.of_part(i) for i in range(parts)], np.empty_like(net.grads)

    def send(answer: Any) -> None:
        pickle.dump(answer, outbox)
        outbox.flush()

    send("ready")
    with threadpool_limits(1):
        while (message := pickle.load(inbox)) is not None:
            rows, step, weights, lr = message
            try:
                result = net.backprop(a["x"][:rows], a["y"][:rows])
                a["probabilities"][:rows] = result.probabilities
            except MemoryError as e:  # the parent's job says "out of memory", as if it had run out itself
                send(e)
                continue
            except Exception:
                send(traceback.format_exc())
                continue
            send(result.loss)
            done[index] = step  # after the answer is in the pipe: a reader that sees it never sleeps
            if index != 1:
                continue
            # every part done, or the parent gave the step up (-1): only then are all gradients whole
            if not wait_for(lambda step=step: done[0] < 0 or done.min() >= step, lambda: os.getppid() == parent):
                return
            if done[0] >= 0:
                failure = _update(every, shared.arrays["params"], weights, optimizer, lr, scratch)
                updated[0] = step if failure is None else -1
                if failure is not None:
                    send(failure)


def _update(
    every: list[dict[str, np.ndarray]],
    params: np.ndarray,
    weights: list[float],
    optimizer: Any,
    lr: float | None,
    scratch: np.ndarray,
) -> Any:
    """The first worker's half of a step: combine every part's gradient and state, then apply the
    optimizer's update (none when `lr` is None); None, or what went wrong, for the parent to raise."""
    try:
        combine([p["grads"] for p in every], [p["state"] for p in every], weights, scratch)
        if lr is not None:
            optimizer.step(params, every[0]["grads"], lr)
    except MemoryError as e:
        return e
    except Exception:
        return traceback.format_exc()
    return None


class PartWorker:
    """One replica in a process of its own, fed through shared arrays; a fresh interpreter
    (`python -m model.parallel`), not a fork, since the process that trains may be running threads."""

    def __init__(
        self, net: Network, shared: SharedArrays, index: int, parts: int, rng: np.random.Generator, config: Any
    ) -> None:
        self.name, self.index = f"batch part {index}", index
        self.arrays = shared.of_part(index)
        self.grads, self.state = self.arrays["grads"], self.arrays["state"]
        self.done = shared.arrays["done"]
        self.state[...] = net.state
        root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "model.parallel"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=root
        )  # in `root`: -m puts the working folder first on the path, and it must be this code's model
        layout = (net.spec, net.dtype.name, net.trainable_from, shared.path, shared.layout)
        self._send((*layout, index, parts, rng, config if index == 1 else None))

    def ready(self) -> None:
        self._receive()

    def start(self, x: np.ndarray, y: np.ndarray, step: int, weights: list[float], lr: float | None) -> None:
        self.arrays["x"][: len(x)] = x
        self.arrays["y"][: len(y)] = y
        self.rows, self.step = len(x), step
        self._send((self.rows, step, weights, lr))

    def result(self) -> BatchResult:
        # Watch for the answer before reading it, so that the read does not sleep; a part that failed
        # never counts itself done, so after a few milliseconds the read waits for what it says.
        done, until = self.done, time.perf_counter() + 0.005
        while done[self.index] < self.step and time.perf_counter() < until:
            pass
        return BatchResult(self._receive(), self.arrays["probabilities"][: self.rows])

    def alive(self) -> bool:
        return self.process.poll() is None

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
    """Training steps over `parts` parts of each batch: step() backprops every part and applies the
    optimizer's update (config.optimizer_for) to their combined gradient; backprop() only fills
    `net.grads`, as Network.backprop does.

    With `processes` (the default on a machine of several cores) the first part runs here and every
    other in a worker process, and the first worker combines the parts and applies the update while
    this process reads the next batch (the weights are whole again after settle(), which every step
    and every reader of the weights calls first); without, all run here in turn, with the same
    results."""

    def __init__(
        self,
        net: Network,
        parts: int,
        rng: np.random.Generator,
        rows: int,
        processes: bool | None = None,
        config: Any = None,
    ) -> None:
        self.net, self.parts = net, parts
        self.scratch = np.empty_like(net.grads)  # another part's gradient, weighted
        self.processes = parts > 1 and (cores() > 1 if processes is None else processes)
        self.optimizer = config.optimizer_for(net) if config is not None and not self.processes else None
        children = rng.spawn(parts) if parts > 1 else []
        self.workers: list[PartWorker] = []
        self.replicas: list[Network] = [net]
        self.shared: SharedArrays | None = None
        self.steps = 0  # steps sent to the workers
        self.updating = False  # every part of the last step answered: its update is being applied
        if parts == 1:  # dropout keeps the run's generator
            return
        if not self.processes:
            self.replicas += [net.replica() for _ in range(parts - 1)]
            for replica, child in zip(self.replicas, children, strict=True):
                _set_dropout_rng(replica, child)
            return
        _set_dropout_rng(net, children[0])
        shapes = {"params": (net.params.shape, net.dtype), "done": ((parts,), np.int64), "updated": ((1,), np.int64)}
        for index in range(parts):
            shapes |= _part_arrays(net, index, -(-rows // parts))
        self.shared = shared = SharedArrays(SharedArrays.plan(shapes))
        try:
            mine = shared.of_part(0)
            shared.arrays["params"][...] = net.params
            mine["grads"][...], mine["state"][...] = net.grads, net.state
            net.adopt(shared.arrays["params"], mine["grads"], mine["state"])
            self.done, self.updated = shared.arrays["done"], shared.arrays["updated"]
            self.workers = [PartWorker(net, shared, i, parts, children[i], config) for i in range(1, parts)]
            for worker in self.workers:
                worker.ready()
        except BaseException:
            self.close()
            raise
        finally:
            shared.forget()

    def settle(self) -> None:
        """Wait for the update of the last step sent: the weights and batch-norm state are then whole."""
        if not self.updating:
            return
        self.updating = False
        updater = self.workers[0]
        if not wait_for(lambda: self.updated[0] in (self.steps, -1), updater.alive):
            raise updater._ended()
        if self.updated[0] == -1:  # the update failed: its reason is in the pipe
            updater._receive()
            raise RuntimeError(f"{updater.name} failed to apply the update")

    def close(self) -> None:
        """Stop the workers and give the network back weights of its own (the shared ones go with them)."""
        if self.workers:
            with contextlib.suppress(RuntimeError, MemoryError):
                self.settle()  # an update under way ends first
            self.done[0] = -1  # and an updater waiting for parts that will not come stops waiting
        for worker in self.workers:
            worker.stop()
        self.workers = []
        if self.shared is not None:
            self.net.adopt(self.net.params.copy(), self.net.grads.copy(), self.net.state.copy())
            self.shared = None

    def step(self, X: np.ndarray, y: np.ndarray, lr: float) -> BatchResult:
        """Backprop over the parts and the optimizer's update at learning rate `lr`."""
        if self.processes:
            return self._in_processes(X, y, lr)
        result = self.backprop(X, y)
        self.optimizer.step(self.net.params, self.net.grads, lr)
        return result

    def backprop(self, X: np.ndarray, y: np.ndarray) -> BatchResult:
        if self.parts == 1:
            return self.net.backprop(X, y)
        if self.processes:
            result = self._in_processes(X, y, None)
            self.settle()
            return result
        pieces, weights = self._pieces(X, y)
        results = [r.backprop(x, labels) for r, (x, labels) in zip(self.replicas, pieces, strict=True)]
        combine([r.grads for r in self.replicas], [r.state for r in self.replicas], weights, self.scratch)
        return self._result(results, weights)

    def _in_processes(self, X: np.ndarray, y: np.ndarray, lr: float | None) -> BatchResult:
        pieces, weights = self._pieces(X, y)
        # The first worker gets its part before the last step's update, which it applies, is over: it
        # then finds the part waiting when the update ends rather than asleep in a read that took 0.2
        # ms to wake (its inputs are not read during an update). Any other worker reads the weights at
        # once, so it gets its part after settle().
        sends = [(w, *piece) for w, piece in zip(self.workers, pieces[1:], strict=True)]
        sends[0][0].start(*sends[0][1:], self.steps + 1, weights, lr)
        self.settle()  # the last step's update: this step reads the weights
        self.steps += 1
        for worker, x, labels in sends[1:]:
            worker.start(x, labels, self.steps, weights, lr)
        first = self.net.backprop(*pieces[0])
        self.done[0] = self.steps
        result = self._result([first, *(worker.result() for worker in self.workers)], weights)
        self.updating = True
        return result

    def _pieces(self, X: np.ndarray, y: np.ndarray) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[float]]:
        """The parts of a batch, and each one's share of it."""
        bounds = [len(X) * i // self.parts for i in range(self.parts + 1)]  # np.linspace took 0.1 ms
        pairs = list(zip(bounds[:-1], bounds[1:], strict=True))
        return [(X[a:b], y[a:b]) for a, b in pairs], [(b - a) / len(X) for a, b in pairs]

    @staticmethod
    def _result(results: list[BatchResult], weights: list[float]) -> BatchResult:
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

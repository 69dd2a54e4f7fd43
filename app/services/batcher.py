"""Micro-batching: single-image answers that arrive together share one forward pass.

One image through the CNN, its calibration and its detector costs about 0.26 ms; sixteen together cost
0.08 ms each, because the matrices are wide enough for BLAS to run near its peak. Under load a worker
has many requests in progress at once, so /predict hands its image to this batcher instead of the
network; the batcher answers every image handed to it before the event loop's next turn in one pass.

The window is one turn of the event loop, not a timer: an idle worker's request is answered on the very
next turn (no wait at all), and under load the batch holds exactly the requests that were ready at
the same time, up to MAX_BATCH. A timed window (BentoML's, Triton's) trades latency for larger batches
where a GPU makes large batches much cheaper; on two CPU cores the gain past ~16 images is small, and
here every millisecond of waiting is a millisecond the drawing page's answer would be late.

Answers equal the single-image ones (the same network, calibration and detector row by row; BLAS may
round the last bit of a float differently for a wider matrix). An exception in a batch's pass makes
its images answered one by one, so a failing item fails alone.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np

from app.infra.prometheus import Metrics
from app.services.registry import LoadedModel

MAX_BATCH = 32
MAX_WAIT_S = 0.002


@dataclass
class _Item:
    model: LoadedModel
    x: np.ndarray  # (784,)
    photo: bool
    future: asyncio.Future


@dataclass
class AnswerBatcher:
    metrics: Metrics | None = None
    max_batch: int = MAX_BATCH
    uncertain_below: float | None = None  # the server's override of the cards' thresholds
    batches: int = 0  # passes run, and the images they answered: for the benchmark and the tests
    items: int = 0
    largest: int = 0
    _pending: list[_Item] = field(default_factory=list)
    _scheduled: bool = False
    _opened: float = 0.0  # when the batch's first image came
    _seen: int = 0  # its size at the last turn

    def answer(self, model: LoadedModel, x: np.ndarray, photo: bool) -> asyncio.Future:
        """A future of (Answers, row) for one (784,) input: the batch's answers and this image's row."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append(_Item(model, x, photo, future))
        if len(self._pending) >= self.max_batch:
            self._flush()
        elif not self._scheduled:
            self._scheduled, self._opened, self._seen = True, loop.time(), 0
            loop.call_soon(self._turn)
        return future

    def _turn(self) -> None:
        """At each turn of the loop: answer now, unless the batch grew during the last turn (more requests
        are on their way) and it has been open less than MAX_WAIT_S."""
        loop = asyncio.get_running_loop()
        grew = len(self._pending) > self._seen
        if grew and self._seen and loop.time() - self._opened < MAX_WAIT_S:
            self._seen = len(self._pending)
            loop.call_soon(self._turn)
            return
        if grew and not self._seen:  # the first turn: see whether others follow
            self._seen = len(self._pending)
            loop.call_soon(self._turn)
            return
        self._flush()

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        by_model: dict[int, list[_Item]] = {}
        for item in pending:  # a version switch between two requests: each batch has one model
            by_model.setdefault(id(item.model), []).append(item)
        for items in by_model.values():
            self._run(items)

    def _run(self, items: list[_Item]) -> None:
        items = [it for it in items if not it.future.done()]  # a client that went away
        if not items:
            return
        predictor = items[0].model.predictor
        try:
            answers = predictor.answer(
                np.stack([it.x for it in items]), self.uncertain_below, np.array([it.photo for it in items])
            )
        except Exception as e:
            if len(items) == 1:
                items[0].future.set_exception(e)
                return
            for it in items:  # find the one that fails: the others are answered
                self._run([it])
            return
        self.batches += 1
        self.items += len(items)
        self.largest = max(self.largest, len(items))
        if self.metrics is not None:
            self.metrics.observe_batch(len(items))
        for i, it in enumerate(items):
            it.future.set_result((answers, i))

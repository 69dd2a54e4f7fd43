"""Image decoding for one web worker: cheap images inline, costly ones in a small pool, within a budget.

Decoding is the one part of a request whose cost the client chooses. Run inline, a costly image
stalls every request on the worker's event loop, `/healthz` included; run in an unbounded pool,
many of them take all the memory. So a canvas-sized image (the common case, about a millisecond)
is decoded inline, where a thread hop would cost more than the work; anything costlier goes to a
pool of a few threads per worker (Pillow and NumPy release the GIL while they work); and a request
may decode at most `request_pixels` pixels in all: a batch's items past that are refused, each
with its own error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from model import numbers
from model.images import ImageError, decode_cost, open_image, read

T = TypeVar("T")
INLINE_COST = 512 * 512  # a few milliseconds of decoding at most
DECODE_NICENESS = 10


class Budget:
    """The decoding one request may still do, in pixels of a PNG (see model.images.decode_cost).

    A request's first image is always within it (its own limits bound it); the others must fit.
    """

    def __init__(self, pixels: int) -> None:
        self.left = self.total = pixels

    def spend(self, cost: int) -> None:
        if cost > self.left and self.left < self.total:
            raise ImageError(
                "too_large", f"this request's images add up to more than {self.total} pixels; send fewer or smaller"
            )
        self.left -= cost


def _lower_thread_priority() -> None:
    # Linux keeps a nice value per thread: the event loop (cheap requests, /healthz) comes first.
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DECODE_NICENESS)


class ImageWork:
    def __init__(self, max_pixels: int, request_pixels: int, threads: int = 2) -> None:
        self.max_pixels = max_pixels  # per image
        self.request_pixels = request_pixels  # per request, over all its images
        self._pool = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="decode", initializer=_lower_thread_priority
        )

    def budget(self) -> Budget:
        return Budget(self.request_pixels)

    async def normalise(self, data: bytes, budget: Budget) -> tuple[np.ndarray, bool]:
        """Image file bytes -> ((28, 28) network input, read as a photo?); raises ImageError. Refused from
        the header alone when it is too large for the image limit or for what is left of the request's
        budget."""
        img = open_image(data, self.max_pixels)
        cost = decode_cost(img, data)
        budget.spend(cost)
        if cost <= INLINE_COST:
            return read(img)
        return await self.in_pool(lambda: read(img))

    async def read_number(self, data: bytes, budget: Budget, classify: numbers.Classify) -> numbers.Reading:
        """Image file bytes -> the number written on it (model.numbers); raises ImageError. Always in the
        pool: segmenting reads tens of candidate digits through the network (about 10 ms for a number on
        the pad), which would stall the event loop."""
        img = open_image(data, self.max_pixels)
        budget.spend(decode_cost(img, data))
        return await self.in_pool(lambda: numbers.read_number(numbers.read_page(img), classify))

    async def read_number_of_ink(self, ink: np.ndarray, classify: numbers.Classify) -> numbers.Reading:
        """A number from ink already decoded (JSON pixels)."""
        return await self.in_pool(lambda: numbers.read_number(numbers.page_of_ink(ink), classify))

    def is_cheap(self, data: bytes) -> bool:
        """Whether this image costs no more to decode than normalise decodes inline (a canvas); raises
        ImageError from its header."""
        return decode_cost(open_image(data, self.max_pixels), data) <= INLINE_COST

    async def in_pool(self, work: Callable[[], T]) -> T:
        """Run work of some milliseconds (a reading, an explanation) off the event loop, in the pool."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, work)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

"""Image decoding for one web worker: off the event loop, a few at a time, within a budget per request.

Decoding is the one part of a request whose cost the client chooses. Run inline, a costly image
stalls every request on the worker's event loop, `/healthz` included; run in an unbounded pool,
many of them take all the memory. So each worker decodes in a small pool of its own (Pillow and
NumPy release the GIL while they work), and a request may ask for at most `request_pixels` pixels
of decoding in all: a batch's items past that budget are refused, each with its own error.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from model.images import ImageError, normalise_bytes, open_image


class ImageWork:
    def __init__(self, max_pixels: int, request_pixels: int, threads: int = 2) -> None:
        self.max_pixels = max_pixels  # per image
        self.request_pixels = request_pixels  # per request, over all its images
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="decode")

    def pixels(self, data: bytes) -> int:
        """What decoding `data` will cost, from its header alone; raises ImageError as decoding would."""
        w, h = open_image(data, self.max_pixels).size
        return w * h

    async def normalise(self, data: bytes) -> np.ndarray:
        """Image file bytes -> (28, 28) network input, decoded in the pool; raises ImageError."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, normalise_bytes, data, self.max_pixels)

    def budget(self) -> Budget:
        return Budget(self.request_pixels)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class Budget:
    """The pixels one request may still decode."""

    def __init__(self, pixels: int) -> None:
        self.left = pixels
        self.total = pixels

    def spend(self, pixels: int) -> None:
        if pixels > self.left:
            raise ImageError(
                "too_large", f"this request's images add up to more than {self.total} pixels; send fewer or smaller"
            )
        self.left -= pixels

"""Generated data, made once per recipe and kept on disk: the drawings, photos and non-digits that
calibration, the detector and the measured sets are made of.

Making them is a third of a full training (24,000 negatives, 3,000 photos of paper, 8,000 drawings:
about two minutes on two cores) and all of a fine-tuning's fixed cost, yet a recipe and a seed give
the same arrays every time. So each set is stored under a key that names everything it depends on:
the function and its arguments, the bytes of any images it is made from, and the source of every
module that generates data. Editing how a drawing is made, or what an image goes through to reach
the network, changes the key, and the set is made anew: a cache can never serve a stale recipe.

Files are written atomically (model.files), so two jobs making the same set at once both succeed and
a reader never sees half a file. `DIGITS_CACHE_DIR` sets the folder (default: `$XDG_CACHE_HOME/digits`,
i.e. `~/.cache/digits`); `DIGITS_CACHE_DIR=off` makes everything anew each time.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np

from model.files import atomic_file

log = logging.getLogger("digits.generated")
# Every module whose code shapes a generated image or what the network reads of it.
GENERATORS = (
    "drawings", "negatives", "photo_set", "photos", "variants", "images", "spec", "trust", "experiment", "generated",
)  # fmt: skip
Arrays = tuple[np.ndarray, ...]


def cache_dir() -> Path | None:
    """Where generated sets are kept, or None when caching is off."""
    configured = os.environ.get("DIGITS_CACHE_DIR", "")
    if configured.lower() == "off":
        return None
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "digits"


@cache
def _recipe_digest() -> str:
    """A digest of the generating code: a change to any of it is a new recipe."""
    h = hashlib.sha256()
    folder = Path(__file__).resolve().parent
    for name in GENERATORS:
        h.update((folder / f"{name}.py").read_bytes())
    return h.hexdigest()


def _key(kind: str, args: dict[str, object]) -> str:
    h = hashlib.sha256(_recipe_digest().encode())
    h.update(kind.encode())
    for name in sorted(args):
        value = args[name]
        h.update(name.encode())
        if isinstance(value, np.ndarray):  # images a set is made from: their bytes, shape and type
            h.update(repr((value.shape, value.dtype.str)).encode())
            h.update(np.ascontiguousarray(value).tobytes())
        else:
            h.update(repr(value).encode())
    return h.hexdigest()[:32]


def generated(kind: str, make: Callable[[], Arrays], **args: object) -> Arrays:
    """`make()`'s arrays, from the cache when this recipe with these arguments was made before.

    `args` must name everything `make` depends on besides the generating modules' code (seeds, sizes,
    the images it starts from). A cache that cannot be read or written is worked around, never fatal."""
    folder = cache_dir()
    if folder is None:
        return make()
    path = folder / f"{kind}-{_key(kind, args)}.npz"
    try:
        with np.load(path, allow_pickle=False) as stored:
            return tuple(stored[f"a{i}"] for i in range(len(stored.files)))
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError) as e:  # damaged or unreadable: made anew, and replaced
        log.warning("generated set unreadable; making it anew", extra={"path": str(path), "error": str(e)})
    arrays = make()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, **{f"a{i}": a for i, a in enumerate(arrays)})
        with atomic_file(path) as f:
            f.write(buffer.getvalue())
    except OSError as e:
        log.warning("generated set not kept", extra={"path": str(path), "error": str(e)})
    return arrays

"""Another commit of this repository, checked out beside it for a benchmark that runs both in one sitting."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def checkout(ref: str, folder: Path) -> Iterator[Path]:
    """`ref` as a detached git worktree in `folder` (removed afterwards): its code, run from there."""
    subprocess.run(["git", "worktree", "add", "--detach", str(folder), ref], cwd=ROOT, check=True)
    try:
        yield folder
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=ROOT, check=True)

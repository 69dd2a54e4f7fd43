"""Where the repository keeps what ships with it: the MNIST files and the committed weights."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MNIST_DIR = REPO_ROOT / "data" / "mnist"
WEIGHTS_DIR = REPO_ROOT / "weights"

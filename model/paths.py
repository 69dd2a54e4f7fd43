"""Where the repository keeps what ships with it: the MNIST files and the committed weights."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MNIST_DIR = REPO_ROOT / "data" / "mnist"
WEIGHTS_DIR = REPO_ROOT / "weights"
# What a fresh install serves, and what the CLI reads by default: the committed model that won on
# MNIST's test set and on the drawings (docs/model.md, "Which model is served").
INITIAL_VERSION = "cnn"

"""Where the repository keeps what ships with it: the MNIST files and the committed weights."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MNIST_DIR = REPO_ROOT / "data" / "mnist"
WEIGHTS_DIR = REPO_ROOT / "weights"  # the classifiers that seed the registry (weights/*.npz)
# The number reader's segment verifier: a folder of its own, so it is never taken for a model version.
SEGMENTS_PATH = WEIGHTS_DIR / "reader" / "segments.npz"
# What a fresh install serves, and what the CLI reads by default: the committed model that won on
# MNIST's test set and on the drawings (docs/model.md, "Which model is served").
INITIAL_VERSION = "cnn"

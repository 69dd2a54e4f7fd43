"""Wall time of `digits train --preset cnn`, the whole command as a user runs it, and what it reached.

    python bench/bench_cnn_training.py [--preset cnn] [-- extra digits train flags]

Runs the CLI into a temporary file, then prints the wall time, the training time and the mean time
per epoch (from the model card), and the test and canvas accuracy. Targets (issue 12): >= 99.6% on
MNIST's test set, <= 10 minutes wall time on a 2-core machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.weights import read_card  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cnn")
    ap.add_argument("extra", nargs="*", help="more `digits train` flags, after --")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="digits-bench-") as tmp:
        out = Path(tmp) / f"{args.preset}.npz"
        command = [sys.executable, "-m", "digits", "train", "--preset", args.preset, "--out", str(out), "--quiet"]
        started = time.perf_counter()
        subprocess.run([*command, *args.extra], cwd=ROOT, check=True)
        wall = time.perf_counter() - started
        card = read_card(out)
    epochs, seconds = card.training.config["epochs"], card.training.seconds
    print(f"digits train --preset {args.preset}: {wall:.0f} s wall ({wall / 60:.1f} min, target <= 10 min)")
    print(
        f"training {seconds:.0f} s over {epochs} epochs: {seconds / epochs:.1f} s per epoch; "
        f"the rest ({wall - seconds:.0f} s) loads data, evaluates, calibrates and trains the detector"
    )
    print(
        f"MNIST test {card.test_accuracy:.2%} (target >= 99.6%), validation {card.training.val_accuracy:.2%}, "
        f"canvas drawings {card.canvas.accuracy:.2%} of {card.canvas.n}; layers {card.architecture}"
    )


if __name__ == "__main__":
    main()

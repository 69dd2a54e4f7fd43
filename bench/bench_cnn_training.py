"""Wall time of `digits train --preset cnn`, the whole command as a user runs it, and what it reached,
beside another commit's in the same run.

    python bench/bench_cnn_training.py [--preset cnn] [--against REF] [--warm] [-- extra digits train flags]

Runs the CLI into a temporary file, then prints the wall time, the training time and the mean time
per epoch (from the model card), and the test and canvas accuracy. With --against REF it first runs
the same command in a checkout of REF (a commit, e.g. the one before a change), so both are timed on
the same machine in the same run. Generated sets (model.generated) are kept in a fresh folder: the
first run of this commit makes them (cold); with --warm it runs again and reads them (what every
later training on a machine does). Targets: >= 99.6% on MNIST's test set (issue 12); at most half
the wall time of the commit before issue 23 (issue 23).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from checkout import checkout  # noqa: E402

from model.weights import read_card  # noqa: E402


def run(checkout: Path, preset: str, extra: list[str], out: Path, env: dict[str, str]) -> float:
    command = [sys.executable, "-m", "digits", "train", "--preset", preset, "--out", str(out), "--quiet", *extra]
    started = time.perf_counter()
    # cwd first on sys.path: `-m digits` imports that checkout's code, not this one's
    subprocess.run(command, cwd=checkout, check=True, env=env)
    return time.perf_counter() - started


def report(name: str, wall: float, out: Path) -> None:
    card = read_card(out)
    epochs, seconds = card.training.config["epochs"], card.training.seconds
    print(
        f"{name}: {wall:.0f} s wall ({wall / 60:.1f} min); training {seconds:.0f} s over {epochs} epochs "
        f"({seconds / epochs:.1f} s per epoch), the rest ({wall - seconds:.0f} s) loads data, evaluates, "
        f"calibrates and trains the detector; MNIST test {card.test_accuracy:.2%} (target >= 99.6%), "
        f"canvas drawings {card.canvas.accuracy:.2%} of {card.canvas.n}; layers {card.architecture}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cnn")
    ap.add_argument("--against", metavar="REF", help="also run this commit's CLI first, in a checkout of it")
    ap.add_argument("--warm", action="store_true", help="run this commit twice: generated sets made, then read")
    ap.add_argument("extra", nargs="*", help="more `digits train` flags, after --")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="digits-bench-") as tmp:
        env = {**os.environ, "DIGITS_CACHE_DIR": str(Path(tmp) / "generated")}
        walls = {}
        if args.against:
            with checkout(args.against, Path(tmp) / "against") as other:
                out = Path(tmp) / "against.npz"
                walls["against"] = run(other, args.preset, args.extra, out, env)
                report(f"{args.against} (before)", walls["against"], out)
        for label in ("cold", "warm") if args.warm else ("cold",):
            out = Path(tmp) / f"{label}.npz"
            walls[label] = run(ROOT, args.preset, args.extra, out, env)
            report(f"this commit, generated sets {'read' if label == 'warm' else 'made'} ({label})", walls[label], out)
        if "against" in walls:
            ratios = ", ".join(
                f"{label} {walls[label] / walls['against']:.2f}x" for label in walls if label != "against"
            )
            print(f"wall time against {args.against}: {ratios} (target <= 0.5x)")


if __name__ == "__main__":
    main()

"""Training and inference speed of the NumPy network, beside PyTorch CPU when it is installed.

    python bench/bench_train.py [--epochs 3] [--layers 784 512 256 10]

Prints seconds per epoch and samples/s for Adam, batch 128, float32 on the 60,000 MNIST training
images; single-image forward latency; and the time to classify the 10,000 test images.
Targets (issue 2): NumPy epoch <= 0.85x PyTorch's, single image <= 50 us, 10,000 images <= 45 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.config import TrainConfig
from model.data import load_mnist
from model.spec import from_pixels
from model.train import train


def blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info

        info = [
            f"{i['internal_api']} {i.get('version')} {i.get('architecture')} threads={i['num_threads']}"
            for i in threadpool_info()
        ]
        return "; ".join(info)
    except ImportError:
        return "threadpoolctl not installed"


def numpy_epochs(layers: list[int], epochs: int, x: np.ndarray, y: np.ndarray) -> list[float]:
    from model.data import Dataset

    times: list[float] = []
    cfg = TrainConfig(layers=layers, epochs=epochs, batch_size=128, schedule="constant", val_size=0)
    result = train(cfg, Dataset(x, y))
    last = 0.0
    for h in result.history:
        times.append(h["seconds"] - last)
        last = h["seconds"]
    bench_numpy_inference(result.network, x)
    return times


def bench_numpy_inference(net, x_u8: np.ndarray) -> None:
    x = from_pixels(x_u8[:10_000])
    one = x[:1]
    for _ in range(200):
        net.predict_proba(one)
    n = 2000
    t = time.perf_counter()
    for _ in range(n):
        net.predict_proba(one)
    single_us = (time.perf_counter() - t) / n * 1e6
    net.predict_proba(x)
    runs = []
    for _ in range(10):
        t = time.perf_counter()
        net.predict_proba(x)
        runs.append(time.perf_counter() - t)
    print(f"numpy   single-image forward: {single_us:.1f} us (target <= 50 us)")
    print(
        f"numpy   10,000-image forward: {min(runs) * 1e3:.1f} ms best, "
        f"{statistics.median(runs) * 1e3:.1f} ms median (target <= 45 ms)"
    )


def torch_epochs(layers: list[int], epochs: int, x_u8: np.ndarray, y: np.ndarray) -> list[float] | None:
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    mods: list = []
    for i, (a, b) in enumerate(zip(layers[:-1], layers[1:], strict=True)):
        mods.append(torch.nn.Linear(a, b))
        if i < len(layers) - 2:
            mods.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*mods)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.from_numpy(from_pixels(x_u8))
    yt = torch.from_numpy(y.astype(np.int64))
    n = len(x)
    times = []
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        t = time.perf_counter()
        perm = torch.randperm(n, generator=g)
        xs, ys = x[perm], yt[perm]
        for s in range(0, n, 128):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xs[s : s + 128]), ys[s : s + 128])
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t)
    model.eval()
    with torch.no_grad():
        one = x[:1]
        for _ in range(200):
            model(one)
        t = time.perf_counter()
        for _ in range(2000):
            model(one)
        single_us = (time.perf_counter() - t) / 2000 * 1e6
        runs = []
        for _ in range(10):
            t0 = time.perf_counter()
            torch.softmax(model(x[:10_000]), dim=1)
            runs.append(time.perf_counter() - t0)
    print(f"torch   single-image forward: {single_us:.1f} us; 10,000-image forward: {min(runs) * 1e3:.1f} ms best")
    return times


BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--layers", type=int, nargs="+", default=[784, 512, 256, 10])
    ap.add_argument(
        "--keep-blas-env",
        action="store_true",
        help="keep OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE (some machines set them for old OpenBLAS builds; "
        "they select slower kernels, so by default this benchmark re-runs itself without them)",
    )
    args = ap.parse_args()
    if not args.keep_blas_env and any(k in os.environ for k in BLAS_OVERRIDES):
        env = {k: v for k, v in os.environ.items() if k not in BLAS_OVERRIDES}
        os.execve(sys.executable, [sys.executable, *sys.argv, "--keep-blas-env"], env)
    data = load_mnist()
    x, y = data.train.x, data.train.y
    print(f"layers {args.layers}, Adam 1e-3, batch 128, float32, {len(x)} images, {args.epochs} epochs")
    print(f"numpy {np.__version__}; BLAS: {blas_info()}")
    print(" ".join(f"{k}={os.environ.get(k)}" for k in BLAS_OVERRIDES))
    np_times = numpy_epochs(args.layers, args.epochs, x, y)
    # The first epoch pays for buffer allocation and page faults; report the steady state.
    np_epoch = statistics.median(np_times[1:] or np_times)
    print(
        f"numpy   epoch: {np_epoch:.3f} s ({len(x) / np_epoch:,.0f} samples/s); all: "
        + ", ".join(f"{t:.3f}" for t in np_times)
    )
    th_times = torch_epochs(args.layers, args.epochs, x, y)
    if th_times is None:
        print("torch   not installed (pip install torch==2.13.0 to compare)")
        return
    th_epoch = statistics.median(th_times[1:] or th_times)
    print(
        f"torch   {__import__('torch').__version__} threads={__import__('torch').get_num_threads()} "
        f"epoch: {th_epoch:.3f} s ({len(x) / th_epoch:,.0f} samples/s); all: " + ", ".join(f"{t:.3f}" for t in th_times)
    )
    print(
        f"ratio   numpy/torch epoch time: {np_epoch / th_epoch:.2f} median (target <= 0.85), "
        f"{min(np_times) / min(th_times):.2f} best-of"
    )


if __name__ == "__main__":
    main()

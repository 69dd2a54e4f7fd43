"""Training and inference speed of the NumPy network, beside PyTorch CPU when it is installed.

    python bench/bench_train.py [--epochs 3] [--layers 784 512 256 10]
    python bench/bench_train.py --preset cnn --epochs 3      # the CNN, layer by layer

Prints seconds per epoch and samples/s for Adam 1e-3, batch 128, float32 on the 60,000 MNIST
training images (no augmentation in either, so both do the same arithmetic); single-image forward
latency; and the time to classify the 10,000 test images. For a network of layers (a CNN) it also
prints each layer's forward and backward time per batch, NumPy's and PyTorch's, where the time goes.
Targets: dense (issue 2) NumPy epoch <= 0.85x PyTorch's, single image <= 50 us, 10,000 images <= 45 ms;
CNN (issue 12) NumPy epoch <= 1.5x PyTorch's, single image <= 2 ms; issue 23: CNN epoch <= 0.8x PyTorch's.
The NumPy epoch works each batch in the preset's parts (model.parallel); the per-layer figures are of
one whole batch on one network. NumPy's and PyTorch's epochs alternate, so a drift in the machine's
speed slows both alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.config import PRESETS, TrainConfig
from model.data import load_mnist
from model.layers import describe
from model.network import is_sizes
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


def numpy_epochs(layers: list, x: np.ndarray, y: np.ndarray, parts: int = 1) -> tuple[Callable[[], float], dict]:
    """One epoch of training at each call, going on from the last (its seconds, set-up excluded)."""
    from model.data import Dataset

    cfg = TrainConfig(layers=layers, epochs=1, batch_size=128, batch_parts=parts, schedule="constant", val_size=0)
    data = Dataset(x, y)
    last: dict = {"network": None}

    def epoch() -> float:
        result = train(cfg, data, start=last["network"])
        last["network"] = result.network
        return result.history[-1]["seconds"]

    return epoch, last


def numpy_details(net, x: np.ndarray, y: np.ndarray, dense: bool, parts: int = 1) -> None:
    if not dense:
        numpy_layer_times(net, x, y)
        if parts > 1:  # what each process of an epoch works: one part, on one BLAS thread
            from threadpoolctl import threadpool_limits

            with threadpool_limits(1):
                numpy_layer_times(net, x, y, batch=128 // parts, batches=160, what="one part, one core")
        convolution_ways()
    bench_numpy_inference(net, x, dense=dense)


def numpy_layer_times(
    net, x_u8: np.ndarray, y: np.ndarray, batch: int = 128, batches: int = 40, what: str = "one network"
) -> None:
    """Forward and backward time of each layer, per batch, over `batches` training steps."""
    net.timings = {}
    xb = from_pixels(x_u8[: batch * batches])
    for s in range(0, len(xb), batch):
        net.backprop(xb[s : s + batch], y[s : s + batch].astype(np.intp))
    timings, net.timings = net.timings, None
    print(f"numpy   per layer, ms per batch of {batch}, {what} (forward / backward):")
    total = 0.0
    for i, layer in enumerate(net.layers):
        f = statistics.median(timings.get(f"{i}:{layer.kind}:forward", [0.0])) * 1e3
        b = statistics.median(timings.get(f"{i}:{layer.kind}:backward", [0.0])) * 1e3
        total += f + b
        print(f"          {i:2d} {layer.kind:8s} {str(layer.spec())[:60]:60s} {f:7.2f} / {b:7.2f}")
    print(f"          sum of layers: {total:.1f} ms per batch")


def convolution_ways(m: int = 128, size: int = 12, channels: int = 32, filters: int = 64, k: int = 5) -> None:
    """The forward pass of one convolution three ways: why model.layers uses im2col and one sgemm."""
    from numpy.lib.stride_tricks import sliding_window_view

    rng = np.random.default_rng(0)
    x = rng.random((m, size, size, channels), dtype=np.float32)
    W = rng.random((k * k * channels, filters), dtype=np.float32)
    out = size - k + 1
    cols = np.empty((m, out, out, k, k, channels), np.float32)
    Wk = W.reshape(k, k, channels, filters)
    shifted = np.empty((m, out, out, channels), np.float32)

    def im2col():
        np.copyto(cols, sliding_window_view(x, (k, k), axis=(1, 2)).transpose(0, 1, 2, 4, 5, 3))
        return cols.reshape(-1, k * k * channels) @ W

    def shift_and_multiply():
        y = np.zeros((m * out * out, filters), np.float32)
        for i in range(k):
            for j in range(k):
                np.copyto(shifted, x[:, i : i + out, j : j + out, :])
                y += shifted.reshape(-1, channels) @ Wk[i, j]
        return y

    def einsum():
        windows = sliding_window_view(x, (k, k), axis=(1, 2))
        return np.einsum("nhwcij,cijf->nhwf", windows, Wk.transpose(2, 0, 1, 3), optimize=True)

    ways = {"im2col + one sgemm": im2col, "shift and multiply": shift_and_multiply, "einsum": einsum}
    assert np.allclose(im2col(), shift_and_multiply(), rtol=1e-3)
    timed = {}
    for name, f in ways.items():
        f()
        runs = []
        for _ in range(10):
            t = time.perf_counter()
            f()
            runs.append(time.perf_counter() - t)
        timed[name] = statistics.median(runs) * 1e3
    print(
        f"numpy   one {k}x{k} convolution forward, batch {m}, {size}x{size}x{channels} -> {filters}: "
        + ", ".join(f"{name} {ms:.1f} ms" for name, ms in timed.items())
    )


def bench_numpy_inference(net, x_u8: np.ndarray, dense: bool = True) -> None:
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
    print(f"numpy   single-image forward: {single_us:.1f} us (target <= {'50 us' if dense else '2,000 us'})")
    print(
        f"numpy   10,000-image forward: {min(runs) * 1e3:.1f} ms best, "
        f"{statistics.median(runs) * 1e3:.1f} ms median" + (" (target <= 45 ms)" if dense else "")
    )


def torch_model(layers: list):
    """The same network in PyTorch: a dense stack from sizes, or the layer objects one by one (NCHW)."""
    import torch

    nn = torch.nn
    if all(isinstance(n, int) for n in layers):
        mods: list = []
        for i, (a, b) in enumerate(zip(layers[:-1], layers[1:], strict=True)):
            mods.append(nn.Linear(a, b))
            if i < len(layers) - 2:
                mods.append(nn.ReLU())
        return nn.Sequential(*mods), (784,)
    mods, channels = [], 1
    for spec in layers:
        kind = spec["type"]
        if kind == "conv":
            mods.append(nn.Conv2d(channels, spec["filters"], spec["size"]))
            channels = spec["filters"]
        elif kind == "maxpool":
            mods.append(nn.MaxPool2d(spec["size"]))
        elif kind == "relu":
            mods.append(nn.ReLU())
        elif kind == "flatten":
            mods.append(nn.Flatten())
        elif kind == "dropout":
            mods.append(nn.Dropout(spec["rate"]))
        elif kind == "batchnorm":  # over channels before the flatten, over features after it
            shape = nn.Sequential(*mods)(torch.zeros(2, 1, 28, 28)).shape
            mods.append(nn.BatchNorm2d(shape[1]) if len(shape) == 4 else nn.BatchNorm1d(shape[1]))
        elif kind == "dense":
            features = nn.Sequential(*mods)(torch.zeros(2, 1, 28, 28)).shape[1]  # what reaches it
            mods.append(nn.Linear(features, spec["units"]))
    return nn.Sequential(*mods), (1, 28, 28)


def torch_layer_times(model, x, y, batches: int = 40) -> None:
    """Forward and backward time of each module, per batch, from hooks (backward: between the
    gradient reaching a module's output and leaving its input)."""
    import torch

    fwd: dict[int, list[float]] = {}
    bwd: dict[int, list[float]] = {}
    marks: dict[int, float] = {}
    hooks = []
    for i, mod in enumerate(model):
        hooks.append(mod.register_forward_pre_hook(lambda m, a, i=i: marks.__setitem__(i, time.perf_counter())))
        hooks.append(
            mod.register_forward_hook(lambda m, a, o, i=i: fwd.setdefault(i, []).append(time.perf_counter() - marks[i]))
        )
        hooks.append(
            mod.register_full_backward_pre_hook(lambda m, g, i=i: marks.__setitem__(-1 - i, time.perf_counter()))
        )
        hooks.append(
            mod.register_full_backward_hook(
                lambda m, gi, go, i=i: bwd.setdefault(i, []).append(time.perf_counter() - marks[-1 - i])
            )
        )
    loss_fn = torch.nn.CrossEntropyLoss()
    xr = x[: 128 * batches].clone().requires_grad_(True)  # so the first module's backward hook fires
    for s in range(0, len(xr), 128):
        model.zero_grad(set_to_none=True)
        loss_fn(model(xr[s : s + 128]), y[s : s + 128]).backward()
    for h in hooks:
        h.remove()
    print("torch   per layer, ms per batch of 128 (forward / backward):")
    for i, mod in enumerate(model):
        f = statistics.median(fwd.get(i, [0.0])) * 1e3
        b = statistics.median(bwd.get(i, [0.0])) * 1e3
        print(f"          {i:2d} {type(mod).__name__:10s} {f:7.2f} / {b:7.2f}")


def torch_epochs(
    layers: list, x_u8: np.ndarray, y: np.ndarray
) -> tuple[Callable[[], float], Callable[[], None]] | None:
    """One epoch of the same training in PyTorch at each call, and what prints its details after."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    model, sample_shape = torch_model(layers)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.from_numpy(from_pixels(x_u8)).reshape(len(x_u8), *sample_shape)
    yt = torch.from_numpy(y.astype(np.int64))
    n = len(x)
    g = torch.Generator().manual_seed(0)

    def epoch() -> float:
        model.train()
        t = time.perf_counter()
        perm = torch.randperm(n, generator=g)
        xs, ys = x[perm], yt[perm]
        for s in range(0, n, 128):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xs[s : s + 128]), ys[s : s + 128])
            loss.backward()
            opt.step()
        return time.perf_counter() - t

    def details() -> None:
        if sample_shape != (784,):
            torch_layer_times(model, x, yt)
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

    return epoch, details


BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--layers", type=int, nargs="+", default=[784, 512, 256, 10])
    ap.add_argument("--preset", choices=sorted(PRESETS), help="take the layers of this preset instead")
    ap.add_argument("--batch-parts", type=int, help="batches in this many parts (default: the preset's, else 1)")
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
    if args.preset:
        args.layers = PRESETS[args.preset].layers
    dense = is_sizes(args.layers)
    print(f"layers {describe(args.layers)}, Adam 1e-3, batch 128, float32, {len(x)} images, {args.epochs} epochs")
    print(f"numpy {np.__version__}; BLAS: {blas_info()}")
    print(" ".join(f"{k}={os.environ.get(k)}" for k in BLAS_OVERRIDES))
    parts = args.batch_parts or (PRESETS[args.preset].batch_parts if args.preset else 1)
    print(f"numpy   each batch in {parts} part(s) (model.parallel)")
    np_epoch, np_last = numpy_epochs(args.layers, x, y, parts)
    torch_run = torch_epochs(args.layers, x, y)
    # Epochs alternate, NumPy's then PyTorch's: this machine's speed drifts by a third within minutes,
    # and a drift then slows both sides alike rather than whichever ran second.
    np_times: list[float] = []
    th_times: list[float] = []
    for _ in range(args.epochs):
        np_times.append(np_epoch())
        if torch_run is not None:
            th_times.append(torch_run[0]())
    numpy_details(np_last["network"], x, y, dense, parts)
    # The first epoch pays for buffer allocation and page faults; report the steady state.
    np_median = statistics.median(np_times[1:] or np_times)
    print(
        f"numpy   epoch: {np_median:.3f} s ({len(x) / np_median:,.0f} samples/s); all: "
        + ", ".join(f"{t:.3f}" for t in np_times)
    )
    if torch_run is None:
        print("torch   not installed (pip install torch==2.13.0 to compare)")
        return
    torch_run[1]()
    import torch

    th_median = statistics.median(th_times[1:] or th_times)
    print(
        f"torch   {torch.__version__} threads={torch.get_num_threads()} epoch: {th_median:.3f} s "
        f"({len(x) / th_median:,.0f} samples/s); all: " + ", ".join(f"{t:.3f}" for t in th_times)
    )
    pairs = [a / b for a, b in zip(np_times[1:] or np_times, th_times[1:] or th_times, strict=True)]
    print(
        f"ratio   numpy/torch epoch time: {np_median / th_median:.2f} median (target <= {0.85 if dense else 0.8}), "
        f"{min(np_times) / min(th_times):.2f} best-of, epoch by epoch " + ", ".join(f"{r:.2f}" for r in pairs)
    )


if __name__ == "__main__":
    main()

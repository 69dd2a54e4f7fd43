"""Layers for convolutional networks, each a small class with `forward` and `backward`.

Images are NHWC: a batch is (m, height, width, channels), so that a convolution's patches, laid
side by side, form one matrix that BLAS multiplies with the kernel in a single sgemm (im2col):

    cols (m*OH*OW, K*K*C) @ W (K*K*C, F) -> (m*OH*OW, F), which *is* the NHWC output.

Why im2col with `sliding_window_view`: it keeps most of a CNN's arithmetic in three sgemm calls per
convolution (forward, dW, dX) and the window view itself costs nothing; only the copy into `cols`
and the col2im adds move memory. For a 5x5 convolution of 32 channels into 64 on 12x12 images, a
batch of 128, the forward pass measured 12.4 ms this way, 19.7 ms as 25 shifted
products of k = 32 ("shift and multiply": small matrices run BLAS far below its peak), and 27.3 ms
with `np.einsum(..., optimize=True)` over the window view (`bench/bench_train.py --preset cnn`
measures the three again, and every layer's share of a training step).

Each layer declares its parameters (`param_shapes`); the network (model.network) keeps all of them
in one flat vector and hands each layer views, so optimizers update every layer in a few ufunc calls.
`forward(x, training=True)` keeps what `backward` needs; `training=False` keeps nothing, so
inference is safe from several threads at once. In training, every array a layer makes lives in a
buffer it reuses from step to step: glibc hands arrays of many megabytes back to the system when
they are freed, so a fresh one each step is page-faulted in anew.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view

Shape = tuple[int, ...]  # one sample's shape: (H, W, C) for images, (n,) for vectors


def per_channel(op: np.ufunc, x2: np.ndarray, v: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = op(x2, v) for (n, C) rows and a (C,) vector, e.g. a bias added to every position.

    Worked on (n/k, k*C) views with v repeated k times: the same arithmetic, but NumPy's inner loop
    runs k*C values long rather than C. Over 16 channels (the first convolution's) an add of 9,216
    rows took 57 us as (n, 16) and 22 us as (n/32, 512)."""
    n, C = x2.shape
    k = math.gcd(n, max(1, 512 // C)) if out.flags.c_contiguous else 1  # a view of `out`, never a copy
    wide = np.empty((k, C), v.dtype)
    wide[...] = v  # np.tile(v, k), in a third of its 2.7 us
    op(x2.reshape(n // k, k * C), wide.reshape(-1), out=out.reshape(n // k, k * C))
    return out


class Layer:
    kind = ""
    params: dict[str, np.ndarray]  # views into the network's flat parameter vector
    grads: dict[str, np.ndarray]  # views into its flat gradient vector, same shapes
    state: dict[str, np.ndarray]  # views into its flat state vector (see state_shapes)

    def build(self, in_shape: Shape) -> Shape:
        """Check the input shape, remember it, return the output shape."""
        self.in_shape = in_shape
        return in_shape

    def param_shapes(self) -> dict[str, Shape]:
        return {}

    def state_shapes(self) -> dict[str, Shape]:
        """Arrays the layer keeps that training does not optimise (batch norm's running statistics)."""
        return {}

    def init(self, rng: np.random.Generator, scheme: str = "he") -> None:
        pass

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        """Fill self.grads from dy = dLoss/dy; return dLoss/dx (unless need_dx is False)."""
        raise NotImplementedError

    def input_gradient(self, dy: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """dLoss/dx at inference, from dy and this layer's input x and output y: the backward pass with
        nothing kept from the forward one, so serving threads can explain answers at the same time."""
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        return {"type": self.kind}

    def buffer(self, name: str, shape: Shape, dtype: np.dtype, training: bool = True) -> np.ndarray:
        """An array to fill: reused from the last step of the same shape in training, fresh otherwise."""
        if not training:
            return np.empty(shape, dtype)
        buffers = self.__dict__.setdefault("_buffers", {})
        key = (name, shape, dtype)
        if key not in buffers:
            buffers[key] = np.empty(shape, dtype)
        return buffers[key]

    def ones(self, n: int, dtype: np.dtype) -> np.ndarray:
        """A vector of ones: ones @ dy sums dy over the batch in BLAS, 3x faster than dy.sum(axis=0)."""
        ones = self.buffer("ones", (n,), dtype)
        ones.fill(1)
        return ones

    def init_weights(self, rng: np.random.Generator, scheme: str) -> None:
        """He initialisation, N(0, 2 / fan_in) and zero biases, for ReLU networks; 'uniform' is the seed
        network's U[-0.5, 0.5) for weights and biases alike."""
        W, b = self.params["W"], self.params["b"]
        if scheme == "uniform":
            W[...] = rng.random(W.shape) - 0.5
            b[...] = rng.random(b.shape) - 0.5
        else:
            W[...] = rng.standard_normal(W.shape) * np.sqrt(2.0 / W.shape[0])
            b[...] = 0


class Conv2D(Layer):
    """Valid 2-D convolution, stride 1: (m, H, W, C) -> (m, H-K+1, W-K+1, F)."""

    kind = "conv"
    # Set by the network on a first layer that s x s pooling follows: in training, the output's rows are
    # then laid out window offset first, (s*s, m, OH/s, OW/s, F), so that the pooling compares s*s whole
    # blocks rather than runs of F values (MaxPool2D.forward). 0: the usual (m, OH, OW, F).
    pool_order = 0

    def __init__(self, filters: int, size: int) -> None:
        self.filters, self.size = filters, size

    def build(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 3 or min(in_shape[:2]) < self.size:
            raise ValueError(f"a {self.size}x{self.size} convolution needs an image at least that big, got {in_shape}")
        H, W, self.channels = in_shape
        self.in_shape, self.out_hw = in_shape, (H - self.size + 1, W - self.size + 1)
        return (*self.out_hw, self.filters)

    def param_shapes(self) -> dict[str, Shape]:
        # W rows are ordered (ki, kj, c), the order of the patches in cols
        return {"W": (self.size * self.size * self.channels, self.filters), "b": (self.filters,)}

    def init(self, rng: np.random.Generator, scheme: str = "he") -> None:
        self.init_weights(rng, scheme)

    def im2col(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """(m, H, W, C) -> cols (m*OH*OW, K*K*C): row (n, i, j) is the patch under output pixel (i, j)."""
        m, K, (OH, OW), C = len(x), self.size, self.out_hw, self.channels
        if C == 1 and training and self.pool_order:  # the transpose in one strided copy, rows ordered
            # (di, dj, n, i, j) for output pixel (s*i + di, s*j + dj): pixel (s*i + di + ki, s*j + dj + kj)
            s = self.pool_order
            _, rows, cols, _ = x.strides
            shape = (K, K, s, s, m, OH // s, OW // s)
            cols_t = self.buffer("cols", shape, x.dtype, training)
            np.copyto(cols_t, as_strided(x, shape, (rows, cols, rows, cols, x.strides[0], s * rows, s * cols)))
            return cols_t.reshape(K * K, -1).T
        if C == 1:  # one channel: build the transpose, K*K copies of shifted images (the window copy would
            # move one float at a time)
            cols_t = self.buffer("cols", (K, K, m, OH, OW), x.dtype, training)
            for i in range(K):
                for j in range(K):
                    cols_t[i, j] = x[:, i : i + OH, j : j + OW, 0]
            return cols_t.reshape(K * K, -1).T  # a transposed view: BLAS reads it as is
        windows = sliding_window_view(x, (K, K), axis=(1, 2))  # (m, OH, OW, C, K, K), a view
        cols = self.buffer("cols", (m, OH, OW, K, K, C), x.dtype, training)
        np.copyto(cols, windows.transpose(0, 1, 2, 4, 5, 3))  # channels last: contiguous runs of C
        return cols.reshape(m * OH * OW, -1)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        cols = self.im2col(x, training)
        y = self.buffer("y", (len(cols), self.filters), x.dtype, training)
        np.matmul(cols, self.params["W"], out=y)  # (m*OH*OW, K*K*C) @ (K*K*C, F) -> (m*OH*OW, F)
        per_channel(np.add, y, self.params["b"], out=y)
        if training:
            self.cols, self.m = cols, len(x)
            if self.pool_order and self.channels == 1:
                s, (OH, OW) = self.pool_order, self.out_hw
                return y.reshape(s * s, len(x), OH // s, OW // s, self.filters)
        return y.reshape(len(x), *self.out_hw, self.filters)

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        dy2 = dy.reshape(-1, self.filters)  # (m*OH*OW, F), rows in the order of cols, as the output's
        np.matmul(self.cols.T, dy2, out=self.grads["W"])  # (K*K*C, m*OH*OW) @ (m*OH*OW, F)
        np.matmul(self.ones(len(dy2), dy.dtype), dy2, out=self.grads["b"])  # sum over the batch, in BLAS
        if not need_dx:  # the network's first layer: no input gradient
            return None
        if dy.ndim == 5:  # window offset first (pool_order): (di, dj, n, i, j, f) back to (n, s*i + di, s*j + dj, f)
            s, (_, m, OH, OW, F) = self.pool_order, dy.shape
            dy2 = dy.reshape(s, s, m, OH, OW, F).transpose(2, 3, 0, 4, 1, 5).reshape(-1, F)
        return self._dx(dy2, self.m, training=True)

    def _dx(self, dy2: np.ndarray, m: int, training: bool) -> np.ndarray:
        K, (OH, OW), C = self.size, self.out_hw, self.channels
        # dcols[k] = dy @ W_k^T for each kernel offset k: (m*OH*OW, F) @ (F, C) -> (K*K, m*OH*OW, C), so
        # that each offset's gradient is one contiguous image to add back (6 ms, not 15, at C=32)
        W_k = self.params["W"].reshape(K * K, C, self.filters).transpose(0, 2, 1)
        dcols = self.buffer("dcols", (K * K, len(dy2), C), dy2.dtype, training)
        np.matmul(dy2, W_k, out=dcols)
        dcols = dcols.reshape(K, K, m, OH, OW, C)
        dx = self.buffer("dx", (m, *self.in_shape), dy2.dtype, training)
        dx.fill(0)
        for i in range(K):  # col2im: every patch adds its gradient back where it was read from
            for j in range(K):
                dx[:, i : i + OH, j : j + OW, :] += dcols[i, j]
        return dx

    def input_gradient(self, dy: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self._dx(dy.reshape(-1, self.filters), len(x), training=False)

    def spec(self) -> dict[str, Any]:
        return {"type": self.kind, "filters": self.filters, "size": self.size}


class MaxPool2D(Layer):
    """Non-overlapping max pooling: (m, H, W, C) -> (m, H/s, W/s, C).

    The gradient of a window's maximum goes to the input that holds it; where several inputs tie for
    it, they share it equally (a subgradient: the shares add up to one). Ties are common here: a blank
    area convolves to the bias alone, and in the shipped CNN pooling comes before batch norm and ReLU,
    so those areas can be active. Sending the whole gradient to each tied input, as this layer once did,
    counted a blank window's gradient four times.
    """

    kind = "maxpool"

    def __init__(self, size: int = 2) -> None:
        self.size = size

    def build(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 3 or in_shape[0] % self.size or in_shape[1] % self.size:
            raise ValueError(f"{self.size}x{self.size} pooling needs a height and width it divides, got {in_shape}")
        self.in_shape = in_shape
        self.out_shape = (in_shape[0] // self.size, in_shape[1] // self.size, in_shape[2])
        return self.out_shape

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if x.ndim == 5:
            return self._forward_offsets(x, training)
        (H, W, C), s = self.in_shape, self.size
        OH, OW = H // s, W // s
        # The maxima in two passes, each with long inner loops: down the rows of a window first, where a
        # row of the image is one contiguous run of W*C values, then across, on a quarter of the data.
        # One 6-d reduction, whose innermost loop is only C long, took 3.6x as long at C = 16.
        rows = x.reshape(len(x), OH, s, W * C)
        down = self.buffer("down", (len(x), OH, W * C), x.dtype, training)
        np.copyto(down, rows[:, :, 0])
        for i in range(1, s):
            np.maximum(down, rows[:, :, i], out=down)
        across = down.reshape(len(x), OH, OW, s, C)
        y = self.buffer("y", (len(x), OH, OW, C), x.dtype, training)
        np.copyto(y, across[:, :, :, 0])
        for j in range(1, s):
            np.maximum(y, across[:, :, :, j], out=y)
        if training:  # where the maxima were, kept now: the next layer may change y in place
            self.at_max, self.share = self._ties(x, y, training)
        return y

    def _forward_offsets(self, x: np.ndarray, training: bool) -> np.ndarray:
        """The same pooling of an input laid out window offset first, (s*s, m, OH, OW, C), as a first
        convolution gives it in training (Conv2D.pool_order): the maxima, the ties and the routing of
        the gradient are then s*s - 1 elementwise steps over whole blocks. Measured here, the first
        convolution and this pooling took 1.07 ms forward and 0.47 ms backward for 64 images this way,
        against 1.35 and 0.68 in the usual layout, whose loops run 16 channels long."""
        blocks = x.reshape(len(x), -1)  # (s*s, m*OH*OW*C)
        y = self.buffer("y", x.shape[1:], x.dtype, training)
        flat = y.reshape(-1)
        np.copyto(flat, blocks[0])
        for block in blocks[1:]:
            np.maximum(flat, block, out=flat)
        at_max = self.buffer("at_max", blocks.shape, np.dtype(np.uint8), training)
        np.equal(blocks, flat, out=at_max.view(bool))
        share = self.buffer("share", y.shape, x.dtype, training)
        np.sum(at_max, axis=0, dtype=x.dtype, out=share.reshape(-1))  # inputs at the maximum, >= 1
        np.reciprocal(share, out=share)
        if training:
            self.at_max, self.share = at_max.reshape(x.shape), share
        return y

    def _ties(self, x: np.ndarray, y: np.ndarray, training: bool) -> tuple[np.ndarray, np.ndarray]:
        """Which inputs hold their window's maximum, (m, OH, s, OW, s, C) as 0/1 bytes, and each window's
        share of its gradient per such input, 1 / (inputs at the maximum), (m, OH, OW, C)."""
        (H, W, C), s = self.in_shape, self.size
        m, OH, OW = len(x), H // s, W // s
        at_max = self.buffer("at_max", (m, OH, s, OW, s, C), np.dtype(np.uint8), training)
        np.equal(x.reshape(at_max.shape), y[:, :, None, :, None, :], out=at_max.view(bool))
        rows = at_max.reshape(m, OH, s, W * C)  # counted as the maxima were found: down, then across
        down = self.buffer("ties_down", (m, OH, W * C), np.dtype(np.uint8), training)
        np.copyto(down, rows[:, :, 0])
        for i in range(1, s):
            np.add(down, rows[:, :, i], out=down)
        across = down.reshape(m, OH, OW, s, C)
        share = self.buffer("share", y.shape, y.dtype, training)
        np.copyto(share, across[:, :, :, 0])
        for j in range(1, s):
            np.add(share, across[:, :, :, j], out=share)
        return at_max, np.reciprocal(share, out=share)

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        return self._route(self.at_max, self.share, dy, training=True)

    def _route(self, at_max: np.ndarray, share: np.ndarray, dy: np.ndarray, training: bool) -> np.ndarray:
        """Each window's gradient to where its maximum was: (m, OH, OW, C) -> (m, H, W, C)."""
        per_input = self.buffer("per_input", dy.shape, dy.dtype, training)
        np.multiply(dy, share, out=per_input)
        dx = self.buffer("dx", at_max.shape, dy.dtype, training)
        if at_max.ndim == 5:  # window offset first (_forward_offsets): the gradient in that layout too
            np.multiply(at_max, per_input, out=dx)
            return dx
        np.multiply(at_max, per_input[:, :, None, :, None, :], out=dx)
        return dx.reshape(len(dy), *self.in_shape)

    def input_gradient(self, dy: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self._route(*self._ties(x, y, training=False), dy, training=False)

    def spec(self) -> dict[str, Any]:
        return {"type": self.kind, "size": self.size}


class ReLU(Layer):
    kind = "relu"

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        y = np.maximum(x, 0, out=x if training else None)  # in place when training: x is not needed again
        if training:
            self.y = y
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        np.multiply(dy, self.y > 0, out=dy)  # y > 0 exactly where x > 0; 10x faster than dy[y <= 0] = 0
        self.y = None
        return dy

    def input_gradient(self, dy: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return dy * (y > 0)


class Flatten(Layer):
    kind = "flatten"

    def build(self, in_shape: Shape) -> Shape:
        self.in_shape = in_shape
        return (int(np.prod(in_shape)),)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        return x.reshape(len(x), -1)

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        return dy.reshape(len(dy), *self.in_shape)

    def input_gradient(self, dy: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return dy.reshape(x.shape)


class Dense(Layer):
    """Z = X @ W + b: (m, n_in) @ (n_in, n_out) -> (m, n_out); the seed's Z1 = W1 X + b1, transposed (model.seed)."""

    kind = "dense"

    def __init__(self, units: int) -> None:
        self.units = units

    def build(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 1:
            raise ValueError(f"a dense layer takes vectors (flatten images first), got {in_shape}")
        self.in_shape = in_shape
        return (self.units,)

    def param_shapes(self) -> dict[str, Shape]:
        return {"W": (self.in_shape[0], self.units), "b": (self.units,)}

    def init(self, rng: np.random.Generator, scheme: str = "he") -> None:
        self.init_weights(rng, scheme)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        y = self.buffer("y", (len(x), self.units), x.dtype, training)
        np.matmul(x, self.params["W"], out=y)  # (m, n_in) @ (n_in, n_out) -> (m, n_out)
        y += self.params["b"]
        if training:
            self.x = x
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        np.matmul(self.x.T, dy, out=self.grads["W"])  # (n_in, m) @ (m, n_out) -> (n_in, n_out)
        np.matmul(self.ones(len(dy), dy.dtype), dy, out=self.grads["b"])  # sum over the batch
        if not need_dx:
            return None
        dx = self.buffer("dx", self.x.shape, dy.dtype)
        return np.matmul(dy, self.params["W"].T, out=dx)  # (m, n_out) @ (n_out, n_in) -> (m, n_in)

    def input_gradient(self, dy: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return dy @ self.params["W"].T  # (m, n_out) @ (n_out, n_in) -> (m, n_in)

    def spec(self) -> dict[str, Any]:
        return {"type": self.kind, "units": self.units}


class BatchNorm(Layer):
    """Batch normalisation per channel (the last axis): y = gamma * (x - mean) / sqrt(var + eps) + beta.

    Training normalises with the batch's own statistics and keeps running averages of them, which
    inference uses instead (they are stored in the weights file as `mean` and `var`, beside the
    trained gamma and beta). It lets a CNN train at a higher rate, so in fewer epochs.
    """

    kind = "batchnorm"
    eps = 1e-5
    momentum = 0.9  # running = momentum * running + (1 - momentum) * batch

    def build(self, in_shape: Shape) -> Shape:
        self.in_shape, self.channels = in_shape, in_shape[-1]
        return in_shape

    def param_shapes(self) -> dict[str, Shape]:
        return {"gamma": (self.channels,), "beta": (self.channels,)}

    def state_shapes(self) -> dict[str, Shape]:
        return {"mean": (self.channels,), "var": (self.channels,)}

    def init(self, rng: np.random.Generator, scheme: str = "he") -> None:
        self.params["gamma"][...] = 1
        self.params["beta"][...] = 0
        self.state["mean"][...] = 0
        self.state["var"][...] = 1

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x2 = x.reshape(-1, self.channels)  # (m*H*W, C): every position of every image is a sample
        gamma, beta = self.params["gamma"], self.params["beta"]
        y = self.buffer("y", x2.shape, x.dtype, training)
        if not training:  # y = x * scale + shift, per channel, from the running statistics
            scale = self._scale(x.dtype)
            per_channel(np.multiply, x2, scale, out=y)
            per_channel(np.add, y, (beta - self.state["mean"] * scale).astype(x.dtype), out=y)
            return y.reshape(x.shape)
        n, ones = len(x2), self.ones(len(x2), x.dtype)
        mean = ones @ x2 / n  # sums over the batch in BLAS
        xc = self.buffer("xc", x2.shape, x.dtype)
        per_channel(np.subtract, x2, mean, out=xc)
        np.multiply(xc, xc, out=y)  # y as scratch for the squares
        var = ones @ y / n
        self.inv_std = (1 / np.sqrt(var + self.eps)).astype(x.dtype)
        for name, batch in (("mean", mean), ("var", var * n / max(n - 1, 1))):  # unbiased, as inference sees
            self.state[name] *= self.momentum
            self.state[name] += (1 - self.momentum) * batch
        per_channel(np.multiply, xc, gamma * self.inv_std, out=y)  # gamma * xhat
        per_channel(np.add, y, beta, out=y)
        self.xc = xc
        return y.reshape(x.shape)

    def _scale(self, dtype: np.dtype) -> np.ndarray:
        """Inference's per-channel factor gamma / sqrt(running var + eps): y = x * scale + shift."""
        return (self.params["gamma"] / np.sqrt(self.state["var"] + self.eps)).astype(dtype)

    def input_gradient(self, dy: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return dy * self._scale(dy.dtype)  # at inference the statistics are constants: dy/dx is the scale

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        dy2 = dy.reshape(-1, self.channels)
        n, ones = len(dy2), self.ones(len(dy2), dy.dtype)
        np.matmul(ones, dy2, out=self.grads["beta"])  # sum of dy per channel
        tmp = self.buffer("tmp", dy2.shape, dy.dtype)
        np.multiply(dy2, self.xc, out=tmp)
        np.matmul(ones, tmp, out=self.grads["gamma"])
        self.grads["gamma"] *= self.inv_std  # sum of dy * xhat per channel
        if not need_dx:
            return None
        # dx = gamma / sigma * (dy - mean(dy) - xhat * mean(dy * xhat)), the batch statistics' share
        # included; as a * dy + b * (x - mean) + c with per-channel a, b, c, in four passes
        a = self.params["gamma"] * self.inv_std
        b = -a * self.inv_std * self.grads["gamma"] / n
        c = -a * self.grads["beta"] / n
        per_channel(np.multiply, self.xc, b, out=tmp)
        per_channel(np.add, tmp, c, out=tmp)
        per_channel(np.multiply, dy2, a, out=dy2)  # dy is this layer's to change, as ReLU's backward changes its own
        tmp += dy2
        return tmp.reshape(dy.shape)


class Dropout(Layer):
    """Inverted dropout: in training, zero a fraction `rate` of inputs and scale the rest by 1/(1-rate),
    so inference is the identity. The mask comes from the network's training rng (set by train())."""

    kind = "dropout"

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.rng: np.random.Generator | None = None

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if not training:
            return x  # and no state written: inference stays safe from several threads
        if self.rate == 0:
            self.mask = None
            return x
        if self.rng is None:
            raise RuntimeError("dropout needs the training rng: call set_rng() on the network first")
        # Kept where a 16-bit random number is at least rate * 2^16, four numbers from each 64-bit draw
        # of the generator: 0.06 ms for 64 x 1,024 inputs, where drawing floats took 0.19. The rate is
        # then a multiple of 2^-16, within 8e-6 of the one asked.
        dropped = round(self.rate * 65536)
        bits = self.rng.bit_generator.random_raw(-(-x.size // 4)).view(np.uint16)[: x.size].reshape(x.shape)
        self.mask = self.buffer("mask", x.shape, x.dtype)
        np.multiply(bits >= dropped, x.dtype.type(1 / (1 - self.rate)), out=self.mask)  # 0 or 1/(1-rate)
        return np.multiply(x, self.mask, out=self.buffer("y", x.shape, x.dtype))

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        return dy if self.mask is None else np.multiply(dy, self.mask, out=self.buffer("dx", dy.shape, dy.dtype))

    def input_gradient(self, dy: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return dy  # the identity at inference

    def spec(self) -> dict[str, Any]:
        return {"type": self.kind, "rate": self.rate}


def _positive_int(spec: dict, key: str, limit: int) -> int:
    value = spec.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= limit:
        raise ValueError(f"layer {spec!r}: {key!r} must be an integer from 1 to {limit}")
    return value


def _rate(spec: dict) -> float:
    rate = spec.get("rate")
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 <= rate < 1:
        raise ValueError(f"layer {spec!r}: 'rate' must be a number in [0, 1)")
    return float(rate)


MAX_UNITS = 65536  # per layer; more is a damaged description, not a network
MAX_KERNEL = 28
MAX_FILTERS = 1024

# How each kind is made from its description, with the keys it takes.
LAYER_KINDS: dict[str, tuple[set[str], Any]] = {
    "conv": (
        {"filters", "size"},
        lambda s: Conv2D(_positive_int(s, "filters", MAX_FILTERS), _positive_int(s, "size", MAX_KERNEL)),
    ),
    "maxpool": ({"size"}, lambda s: MaxPool2D(_positive_int(s, "size", MAX_KERNEL))),
    "relu": (set(), lambda s: ReLU()),
    "flatten": (set(), lambda s: Flatten()),
    "dense": ({"units"}, lambda s: Dense(_positive_int(s, "units", MAX_UNITS))),
    "dropout": ({"rate"}, lambda s: Dropout(_rate(s))),
    "batchnorm": (set(), lambda s: BatchNorm()),
}


def from_spec(spec: Any) -> Layer:
    """A layer from its card description, e.g. {"type": "conv", "filters": 32, "size": 5}."""
    if not isinstance(spec, dict) or spec.get("type") not in LAYER_KINDS:
        raise ValueError(f"a layer is an object with a 'type' among {sorted(LAYER_KINDS)}, got {spec!r}")
    keys, make = LAYER_KINDS[spec["type"]]
    unknown = set(spec) - keys - {"type"}
    if unknown:
        raise ValueError(f"layer {spec!r}: unknown key(s) {sorted(unknown)}")
    return make(spec)


def describe(layers: Any) -> str:
    """A short name for a card's layers: "784-256-10" for sizes, "32C5-P2-64C5-P2-256-10" for layer
    objects (the usual notation: filters C kernel, P pool, dense units, D dropout; ReLU and flatten
    implied)."""
    if not isinstance(layers, list):
        return "?"
    if all(isinstance(n, int) for n in layers):
        return "-".join(map(str, layers))
    names = {
        "conv": lambda s: f"{s.get('filters')}C{s.get('size')}",
        "maxpool": lambda s: f"P{s.get('size')}",
        "dense": lambda s: str(s.get("units")),
        "dropout": lambda s: f"D{s.get('rate')}",
        "batchnorm": lambda s: "BN",
    }
    kinds = [s.get("type") if isinstance(s, dict) else None for s in layers]
    return "-".join(names[k](s) for k, s in zip(kinds, layers, strict=True) if k in names)

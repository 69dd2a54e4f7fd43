"""Random distortions of training images for a CNN: shift, rotation, scaling and elastic warps.

Every output pixel p of a distorted image reads the source image at

    q = R(theta) p / s + c - t + alpha * smooth(U)(p)

(p, c in pixels about the centre c; R a rotation, s a scale, t a shift; U a field of uniform noise
smoothed by a Gaussian, Simard et al. 2003), with bilinear interpolation. A whole batch is one set of
array operations: the smoothing is two (28, 28) matrix products per image and the sampling one
gather of four neighbours, so distorting costs ~3 ms a batch of 128, next to ~40 ms of training.
All randomness comes from the run's generator, in a fixed order, so a seed reproduces a run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.spec import N_PIXELS, SIDE

PAD = 1  # a zero border, so that every bilinear neighbour of a clipped coordinate exists


@dataclass(frozen=True)
class Distortions:
    shift: float = 0.0  # pixels, uniform in [-shift, shift] on each axis
    rotate: float = 0.0  # degrees, uniform in [-rotate, rotate]
    scale: float = 0.0  # relative, uniform in [1 - scale, 1 + scale]
    elastic: float = 0.0  # RMS displacement in pixels of the elastic warp; 0 means none
    sigma: float = 4.0  # pixels: the smoothness of the elastic field


def gaussian_matrix(sigma: float, n: int = SIDE) -> np.ndarray:
    """(n, n) matrix whose product with a column smooths it by a Gaussian, rows summing to 1."""
    d = np.arange(n)[:, None] - np.arange(n)[None, :]
    g = np.exp(-(d**2) / (2 * sigma**2))
    return g / g.sum(axis=1, keepdims=True)


class Distorter:
    """Distorted float batches (m, 784) in [0, 1] of uint8 images (n, 784)."""

    def __init__(self, x: np.ndarray, d: Distortions, dtype: type | np.dtype = np.float32) -> None:
        n, side = len(x), SIDE + 2 * PAD
        padded = np.zeros((n, side, side), np.uint8)
        padded[:, PAD:-PAD, PAD:-PAD] = x.reshape(n, SIDE, SIDE)
        self.flat = padded.reshape(-1)  # image i, row r, column c at i*side*side + r*side + c
        self.d, self.dtype, self.side = d, np.dtype(dtype), side
        centre = (SIDE - 1) / 2
        self.grid = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32) - centre  # (2, 28, 28): row and column offsets
        self.centre = centre + PAD
        self.G = gaussian_matrix(d.sigma).astype(np.float32)
        # smoothing uniform(-1, 1) noise by G on both axes leaves a field of standard deviation
        # sqrt(1/3) * sum(g^2) in the interior; dividing by it makes `elastic` the RMS displacement
        g = self.G[SIDE // 2]
        self.field_scale = d.elastic / (np.sqrt(1 / 3) * float((g**2).sum()))

    def _coordinates(self, m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        d = self.d
        theta = np.deg2rad(rng.uniform(-d.rotate, d.rotate, m))
        s = rng.uniform(1 - d.scale, 1 + d.scale, m)
        t = rng.uniform(-d.shift, d.shift, (2, m))
        cos = (np.cos(theta) / s).astype(np.float32)[:, None, None]
        sin = (np.sin(theta) / s).astype(np.float32)[:, None, None]
        t = (self.centre - t).astype(np.float32)[:, :, None, None]
        r, c = self.grid
        rows = cos * r - sin * c + t[0]  # (m, 28, 28)
        cols = sin * r + cos * c + t[1]
        if d.elastic:
            noise = rng.uniform(-1, 1, (2 * m * SIDE, SIDE)).astype(np.float32)  # 2m fields, row by row
            # Blur along rows, then along columns, each as one (2m*28, 28) @ (28, 28) product rather than
            # 2m small ones (5x faster). The result is each field blurred and transposed, which, for
            # noise, is just another draw of the same smooth random field.
            along_rows = (noise @ self.G.T).reshape(2 * m, SIDE, SIDE)
            smooth = (along_rows.transpose(0, 2, 1).reshape(-1, SIDE) @ self.G.T).reshape(2, m, SIDE, SIDE)
            rows += self.field_scale * smooth[0]
            cols += self.field_scale * smooth[1]
        return rows, cols

    def batch(self, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        m, side = len(idx), self.side
        rows, cols = self._coordinates(m, rng)
        top = side - 1.001  # the last coordinate whose lower neighbour still has an upper one
        np.clip(rows, 0, top, out=rows)  # outside the image reads the zero border
        np.clip(cols, 0, top, out=cols)
        r0, c0 = np.floor(rows), np.floor(cols)
        fr, fc = (rows - r0).astype(self.dtype, copy=False), (cols - c0).astype(self.dtype, copy=False)
        base = (idx * side * side)[:, None, None] + r0.astype(np.intp) * side + c0.astype(np.intp)  # (m, 28, 28)
        tl, tr = self.flat[base], self.flat[base + 1]  # the four neighbours, uint8
        bl, br = self.flat[base + side], self.flat[base + side + 1]
        top_row = tl + fc * (tr.astype(self.dtype) - tl)
        bottom_row = bl + fc * (br.astype(self.dtype) - bl)
        out = top_row + fr * (bottom_row - top_row)  # bilinear, in 0..255
        out *= np.asarray(1 / 255, self.dtype)
        return out.reshape(m, N_PIXELS)

"""Blurred colour targets without a blurred copy of the frames: one random Gaussian tap per ray.

Early in training a rig's fine texture gives the photometric loss a narrow basin in depth (a surface a
pixel off matches nothing); fitting blurred images first widens it (coarse-to-fine targets). Each
gathered ray takes the colour of one neighbour drawn with the Gaussian's weights, so its target is the
blurred colour in expectation: an L2 loss has the blurred image's minimiser, at the cost of one more
gather. Only the static branch (the geometry) gets these targets; the dynamic branch keeps sharp ones.
"""
from __future__ import annotations

import math

import numpy as np

MAX_RADIUS = 3  # taps at most 3 pixels away: radius 2 sigma up to sigma 1.5, then cut at 3 px (1 sigma at 3)


def gaussian_taps(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """2-D Gaussian taps -> offsets [M, 2] int (dy, dx) and weights [M] summing to 1 (one tap at sigma 0)."""
    if sigma <= 0:
        return np.zeros((1, 2), dtype=np.int64), np.ones(1)
    r = min(MAX_RADIUS, max(1, math.ceil(2 * sigma)))
    d = np.arange(-r, r + 1)
    dy, dx = (a.ravel() for a in np.meshgrid(d, d, indexing="ij"))
    w = np.exp(-(dy ** 2 + dx ** 2) / (2 * sigma ** 2))
    return np.stack([dy, dx], 1), w / w.sum()


def blurred_pixels(pix: np.ndarray, hw: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Flat pixel indices [B] -> the flat index of one Gaussian tap around each, drawn from ``rng``.

    Taps beyond the border repeat the edge pixel (replicate padding)."""
    h, w = hw
    offsets, weights = gaussian_taps(sigma)
    dy, dx = offsets[rng.choice(len(weights), size=len(pix), p=weights)].T
    return np.clip(pix // w + dy, 0, h - 1) * w + np.clip(pix % w + dx, 0, w - 1)

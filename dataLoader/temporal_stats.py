"""Per-pixel statistics of one camera's video over time, for the frame cache (:mod:`dataLoader.frame_cache`):
the temporal std (the dynamic-ray label), and the temporal median and mode (static colour targets).
"""
from __future__ import annotations

import cv2
import numpy as np

MODE_TOL = 8  # uint8 levels: frames whose colours differ by at most this much (every channel) agree
MODE_CANDIDATES = 32  # frames tried as the centre of the mode (evenly spaced); every frame when T is smaller


class TemporalMoments:
    """Per-pixel running sums of x and x^2 over frames, exact in uint32 (up to 66,000 uint8 frames).

    Fed one decoded frame at a time, so the std map costs no float copy of a camera's video.
    """

    def __init__(self, hw: tuple[int, int]):
        self.n = 0
        self.s1 = np.zeros((*hw, 3), dtype=np.uint32)
        self.s2 = np.zeros((*hw, 3), dtype=np.uint32)

    def add(self, frame: np.ndarray) -> None:
        """frame: uint8 [H, W, 3]."""
        v = frame.astype(np.uint32)
        self.s1 += v
        v *= v
        self.s2 += v
        self.n += 1

    def std(self, blur_kernel: int) -> np.ndarray:
        """-> float32 [H, W]: population std over time in [0, 1] units, mean over channels, Gaussian blur."""
        mean = self.s1 / self.n
        var = np.maximum(self.s2 / self.n - mean * mean, 0.0)
        std = (np.sqrt(var) / 255.0).mean(axis=-1).astype(np.float32)
        if blur_kernel > 1:
            std = cv2.GaussianBlur(std, (blur_kernel, blur_kernel), 0)
        return std.astype(np.float32)


def temporal_median(cam: np.ndarray, rows: int = 64) -> np.ndarray:
    """One camera's frames uint8 [H, W, T, 3] -> uint8 [H, W, 3]: each pixel's median over time (the lower
    of the two middle values for even T), a few rows at a time (no float copy of the video)."""
    mid = (cam.shape[2] - 1) // 2
    out = np.empty((cam.shape[0], cam.shape[1], cam.shape[3]), dtype=np.uint8)
    for r in range(0, cam.shape[0], rows):
        out[r:r + rows] = np.partition(cam[r:r + rows], mid, axis=2)[:, :, mid]
    return out


def temporal_mode(cam: np.ndarray, median: np.ndarray | None = None, tol: int = MODE_TOL,
                  candidates: int = MODE_CANDIDATES) -> np.ndarray:
    """One camera's frames uint8 [H, W, T, 3] (and their temporal median [H, W, 3], computed if not given)
    -> uint8 [H, W, 3]: each pixel's temporal mode.

    A colour's support is the set of frames that agree with it (every channel within ``tol``). Where the
    median's support holds at least half the frames, the result is that support's mean. Elsewhere the
    candidate frame with the largest support is the centre, and the result is its support's mean. Unlike the
    median, this is the background wherever the background is the colour seen longest, even when movers
    cover the pixel in most frames (a passing object's colours at a pixel change as it moves).
    """
    h, w, t, _ = cam.shape
    flat = cam.reshape(h * w, t, 3)
    median = (temporal_median(cam) if median is None else median).reshape(h * w, 3)
    out = np.empty((h * w, 3), dtype=np.float32)
    settled = np.empty(h * w, dtype=bool)
    step = max(1, 2 ** 22 // t)
    for i in range(0, h * w, step):
        f = np.moveaxis(flat[i:i + step], 2, 0).astype(np.int16)  # [3, P, T]
        agree = _agree(f, median[i:i + step].T.astype(np.int16)[:, :, None], tol)  # [P, T]
        out[i:i + step] = _support_mean(f, agree)
        settled[i:i + step] = 2 * agree.sum(1) >= t
    centres = np.unique(np.linspace(0, t - 1, min(t, candidates)).round().astype(int))
    pixels = np.flatnonzero(~settled)
    step = max(1, 2 ** 22 // (t * len(centres)))
    for i in range(0, len(pixels), step):
        pix = pixels[i:i + step]
        f = np.moveaxis(flat[pix], 2, 0).astype(np.int16)  # [3, P, T]
        agree = _agree(f[:, :, :, None], f[:, :, None, centres], tol)  # [P, T, C]
        best = np.take_along_axis(agree, agree.sum(1).argmax(1)[:, None, None], 2)[:, :, 0]  # [P, T]
        out[pix] = _support_mean(f, best)
    return np.round(out).astype(np.uint8).reshape(h, w, 3)


def _agree(a: np.ndarray, b: np.ndarray, tol: int) -> np.ndarray:
    """Colours a, b [3, ...] (int16, broadcastable) -> bool [...]: every channel within tol."""
    agree = np.abs(a[0] - b[0]) <= tol
    for c in (1, 2):
        agree &= np.abs(a[c] - b[c]) <= tol
    return agree


def _support_mean(f: np.ndarray, agree: np.ndarray) -> np.ndarray:
    """Frames f [3, P, T] and a support agree [P, T] -> [P, 3] mean colour of each pixel's supporting frames."""
    return (np.einsum("cpt,pt->pc", f.astype(np.float32), agree.astype(np.float32))
            / np.maximum(agree.sum(1, keepdims=True), 1))

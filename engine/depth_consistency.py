"""Multi-view consistency of exported depth maps (the MVS-style filter of issue 14).

Each camera's depth map is lifted to world points and projected into its neighbour cameras; a
pixel agrees with a neighbour when the point projects inside that image onto a valid pixel whose
depth matches the projected camera z within ``rel_tol``. A pixel is kept when it agrees with at
least ``min_agree`` neighbours (or, where it projects into no neighbour at all, is left as is but
does not count as checked). Depth from a model that explains its photos with haze near the
cameras does not reproject consistently: its kept fraction is low and its error high.

Conventions: c2w [K, 3, 4] world OpenGL cameras (x right, y up, looking along -z); depth [K, H, W]
world-unit camera z (0 where there is none); pixel centres at +0.5 (:func:`dataLoader.rays.pixel_directions`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dataLoader.rays import pixel_directions


@dataclass(frozen=True)
class ConsistencyReport:
    """Per camera: kept [K] (fraction of its valid pixels kept), checked [K] (fraction that project
    into >= 1 neighbour), error [K] (median |z_proj - z_nbr| / z_nbr over checked pixels), mask [K, H, W]."""

    kept: np.ndarray
    checked: np.ndarray
    error: np.ndarray
    mask: np.ndarray


def lift(depth: np.ndarray, c2w: np.ndarray, focal: float) -> np.ndarray:
    """depth [H, W] camera z, c2w [3, 4] -> world points [H*W, 3]."""
    h, w = depth.shape
    dirs = pixel_directions(h, w, float(focal)).reshape(-1, 3).double().numpy()
    return (dirs * depth.reshape(-1, 1)) @ c2w[:, :3].T + c2w[:, 3]


def project(points: np.ndarray, c2w: np.ndarray, focal: float, hw: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """World points [N, 3] -> (column x [N], row y [N], camera z [N]) in camera c2w (pixel centres at +0.5)."""
    h, w = hw
    cam = (points - c2w[:, 3]) @ c2w[:, :3]
    z = -cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        x = focal * cam[:, 0] / z + w / 2
        y = -focal * cam[:, 1] / z + h / 2
    return x, y, z


def neighbours(c2w: np.ndarray, k: int, n: int) -> list[int]:
    """The n cameras whose centres are closest to camera k's."""
    d = np.linalg.norm(c2w[:, :, 3] - c2w[k, :, 3], axis=-1)
    d[k] = np.inf
    return [int(j) for j in np.argsort(d)[:n] if np.isfinite(d[j])]


def consistency(depth: np.ndarray, mask: np.ndarray, c2w: np.ndarray, focal: float, n_neighbours: int = 4,
                rel_tol: float = 0.05, min_agree: int = 1) -> ConsistencyReport:
    """Check every camera's depth against its ``n_neighbours`` nearest cameras (see module doc)."""
    k_cams, h, w = depth.shape
    c2w = np.asarray(c2w, dtype=np.float64)
    kept, checked, error, keep_mask = [], [], [], np.zeros_like(mask)
    for k in range(k_cams):
        pts = lift(depth[k].astype(np.float64), c2w[k], focal)
        valid = mask[k].reshape(-1)
        agree = np.zeros(h * w, dtype=int)
        seen = np.zeros(h * w, dtype=bool)
        errs = np.full(h * w, np.inf)
        for j in neighbours(c2w, k, n_neighbours):
            x, y, z = project(pts, c2w[j], focal, (h, w))
            col, row = np.floor(x).astype(np.int64, copy=False), np.floor(y).astype(np.int64, copy=False)
            inside = valid & (z > 0) & np.isfinite(x) & np.isfinite(y) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
            idx = np.flatnonzero(inside)
            d_nbr = depth[j, row[idx], col[idx]]
            ok_nbr = mask[j, row[idx], col[idx]]
            idx, d_nbr, z_idx = idx[ok_nbr], d_nbr[ok_nbr], z[idx][ok_nbr]
            rel = np.abs(z_idx - d_nbr) / d_nbr
            seen[idx] = True
            errs[idx] = np.minimum(errs[idx], rel)
            agree[idx] += rel < rel_tol
        keep = valid & (agree >= min_agree)
        keep_mask[k] = keep.reshape(h, w)
        n_valid = max(int(valid.sum()), 1)
        kept.append(keep.sum() / n_valid)
        checked.append((seen & valid).sum() / n_valid)
        error.append(float(np.median(errs[seen & valid])) if (seen & valid).any() else float("nan"))
    return ConsistencyReport(np.asarray(kept), np.asarray(checked), np.asarray(error), keep_mask)

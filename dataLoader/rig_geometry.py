"""Rig-level geometry: forward-facing detection and the bounded-scene box (issue: general rigs).

Bounded-scene box, first that applies (an explicit ``scene_box`` in the config always wins, see
``dataLoader.dataset``): the sparse COLMAP points (:mod:`dataLoader.scene_points`), as the
``POINT_PERCENTILES`` box of the points united with the camera centres; otherwise every camera
frustum between its near and far bounds from ``poses_bounds.npy``. Both padded by ``margin``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dataLoader.poses import CameraRig, SceneNormalization, unit
from dataLoader.rays import pixel_directions
from dataLoader.scene_points import scene_points

NDC_BOX = (-1.5, -1.67, -1.0)  # default NDC aabb lower corner (upper = -lower)
POINT_PERCENTILES = (1.0, 99.0)  # per-axis range of the sparse points kept in the box (drops stray points)


def view_dirs(c2w: np.ndarray) -> np.ndarray:
    """Unit viewing directions [K, 3] of cameras c2w [K, 3, 4] (OpenGL: they look down -z)."""
    return unit(-np.asarray(c2w, dtype=np.float64)[:, :, 2])


def view_angles_deg(c2w: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Angles [K] (degrees) between each camera's viewing direction and the unit ``direction`` [3]."""
    return np.degrees(np.arccos(np.clip(view_dirs(c2w) @ direction, -1.0, 1.0)))


def mean_view_dir(c2w: np.ndarray) -> np.ndarray:
    """The rig's mean viewing direction [3] (unit)."""
    return unit(view_dirs(c2w).sum(0))


def view_spread_deg(c2w: np.ndarray) -> float:
    """Largest angle (degrees) between a camera's viewing direction and the rig's mean direction."""
    return float(view_angles_deg(c2w, mean_view_dir(c2w)).max())


def is_forward_facing(rig: CameraRig, max_angle_deg: float = 30.0) -> bool:
    """True when every camera looks within ``max_angle_deg`` of the mean direction (NDC is valid)."""
    return view_spread_deg(rig.c2w) <= max_angle_deg


def frustum_points(c2w_norm: np.ndarray, hwf, near: np.ndarray, far: np.ndarray) -> np.ndarray:
    """Corners and centres of every camera frustum at its near and far depth -> [K*10, 3]."""
    h, w, f = hwf
    corners = torch.tensor([[0, 0], [w, 0], [0, h], [w, h], [w / 2, h / 2]], dtype=torch.float64)
    dirs = pixel_directions(int(h), int(w), float(f), corners).numpy()
    pts = []
    for c2w, n, fa in zip(c2w_norm, near, far):
        world_dirs = dirs @ c2w[:, :3].T
        for z in (n, fa):
            pts.append(c2w[:, 3] + z * world_dirs)
    return np.concatenate(pts)


def bounded_box(rig: CameraRig, norm: SceneNormalization, margin: float = 0.05) -> np.ndarray:
    """Normalized-world aabb [2, 3] covering every camera frustum between its near and far bounds."""
    c2w = norm.apply(rig.c2w)
    pts = frustum_points(c2w, rig.hwf, rig.bounds[:, 0] * norm.scale, rig.bounds[:, 1] * norm.scale)
    lo, hi = pts.min(0), pts.max(0)
    pad = margin * (hi - lo)
    return np.stack([lo - pad, hi + pad])


def points_box(points_norm: np.ndarray, centres_norm: np.ndarray, margin: float = 0.05,
               percentiles=POINT_PERCENTILES) -> np.ndarray:
    """Normalized-world aabb [2, 3]: per-axis percentile range of points [M, 3] united with the
    camera centres [K, 3], padded by ``margin`` of its size on every side."""
    lo = np.minimum(np.percentile(points_norm, percentiles[0], axis=0), centres_norm.min(0))
    hi = np.maximum(np.percentile(points_norm, percentiles[1], axis=0), centres_norm.max(0))
    pad = margin * (hi - lo)
    return np.stack([lo - pad, hi + pad])


def bounded_scene_box(rig: CameraRig, norm: SceneNormalization, datadir: Path | None = None,
                      cam_names=None) -> tuple[np.ndarray, str]:
    """(normalized-world aabb [2, 3], where it came from): sparse points when the scene has them
    (``colmap_depth.npz`` or ``sparse/0``), else the camera frusta (see the module doc)."""
    found = scene_points(datadir, rig, cam_names or rig.names or ()) if datadir is not None else None
    if found is None:
        return bounded_box(rig, norm), "camera frusta (poses_bounds.npy near/far)"
    pts, source = found
    return points_box(norm.apply_points(pts), norm.apply(rig.c2w)[:, :, 3]), f"{len(pts)} sparse points of {source}"


def min_near(rig: CameraRig, norm: SceneNormalization) -> float:
    """Smallest ray parameter to sample in bounded mode: 0.9 x the nearest near bound (normalized)."""
    return 0.9 * float(rig.bounds[:, 0].min()) * norm.scale


def box_coverage(rig: CameraRig, norm: SceneNormalization, box: np.ndarray, n_side: int = 8) -> float:
    """Mean fraction of the training rays' [near, far] segments that lies inside ``box`` [2, 3] (normalized
    world, bounded rays), over an n_side x n_side pixel grid of every camera. 1: the box holds every segment."""
    h, w, f = rig.hwf
    g = (np.arange(n_side) + 0.5) / n_side
    xy = torch.tensor(np.stack(np.meshgrid(g * w, g * h), -1).reshape(-1, 2), dtype=torch.float64)
    dirs_cam = pixel_directions(int(h), int(w), float(f), xy).numpy()  # [P, 3], camera z = -1
    c2w = norm.apply(rig.c2w)
    fractions = []
    for k in range(len(rig)):
        o = c2w[k, :, 3]
        d = dirs_cam @ c2w[k, :, :3].T  # [P, 3]: unit camera z, so t is camera depth
        near, far = rig.bounds[k] * norm.scale
        with np.errstate(divide="ignore", invalid="ignore"):
            t0, t1 = (box[0] - o) / d, (box[1] - o) / d
        lo = np.nan_to_num(np.minimum(t0, t1), nan=-np.inf).max(-1)
        hi = np.nan_to_num(np.maximum(t0, t1), nan=np.inf).min(-1)
        inside = np.clip(np.minimum(hi, far) - np.maximum(lo, near), 0.0, None)
        fractions.append(inside / (far - near))
    return float(np.mean(fractions))

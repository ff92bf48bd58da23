"""Sparse 3D points of a capture, for the bounded-scene box (SPEC §4): COLMAP keypoints or model points.

Sources, first found wins:

- ``colmap_depth.npz`` (``colmap2depth.py``): every keypoint is lifted back to 3D with the scene's own
  cameras, ``c + z * dir(x, y)`` (z = stored world-unit camera z; the table was checked against
  ``poses_bounds.npy`` when it was written);
- ``sparse/0`` (``imgs2poses.py``): the model's ``points3D``, used only when the model's images of
  the scene's cameras sit where ``poses_bounds.npy`` puts them (same world).

A source that does not fit the scene (other cameras, another world, unreadable) is skipped with a
warning: the box then falls back to the camera frusta. Points are returned in world units.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from core.errors import UserError
from dataLoader.depth_files import load_sparse_depth
from dataLoader.poses import CameraRig
from dataLoader.rays import pixel_directions
from dataLoader.scene_layout import SceneDir

log = logging.getLogger(__name__)



def depth_table_points(path: Path, rig: CameraRig, cam_names) -> np.ndarray:
    """Keypoints of ``colmap_depth.npz`` lifted to world points [M, 3] with the rig's cameras."""
    sp = load_sparse_depth(path)
    sp.check_cameras(path, cam_names, rig.c2w)
    h, w, f = rig.hwf
    row = np.asarray([list(cam_names).index(n) for n in sp.cam_names], dtype=np.int64)[sp.cam_index]
    xy = sp.pixel_xy((int(h), int(w)))
    dirs_cam = pixel_directions(int(h), int(w), float(f), torch.from_numpy(xy)).numpy()
    c2w = rig.c2w[row]
    dirs = np.einsum("mij,mj->mi", c2w[:, :, :3], dirs_cam)
    ok = np.isfinite(sp.depth) & (sp.depth > 0)
    return (c2w[:, :, 3] + sp.depth[:, None] * dirs)[ok]


def model_points(sparse_dir: Path, rig: CameraRig, cam_names) -> np.ndarray:
    """``points3D`` [M, 3] of a COLMAP model whose cameras agree with the rig (UserError otherwise)."""
    from dataLoader import colmap  # pycolmap is only needed when a model is present

    rec, _ = colmap.read_model_in_world(sparse_dir, rig.c2w, float(rig.bounds[:, 0].min()), cam_names)
    return np.asarray([p.xyz for p in rec.points3D.values()], dtype=np.float64).reshape(-1, 3)


def scene_points(datadir: Path, rig: CameraRig, cam_names) -> tuple[np.ndarray, str] | None:
    """(world points [M, 3], source path) from the first usable source, or None."""
    scene = SceneDir(datadir)
    for path, reader in ((scene.sparse_depth, depth_table_points), (scene.sparse_model, model_points)):
        if not path.exists():
            continue
        try:
            pts = reader(path, rig, cam_names)
        except UserError as exc:
            log.warning("scene box: ignoring %s (%s)", path, exc)
            continue
        pts = pts[np.all(np.isfinite(pts), axis=1)]
        if len(pts) >= 8:
            return pts, str(path)
        log.warning("scene box: ignoring %s (only %d points)", path, len(pts))
    return None

"""Depth files on disk (SPEC §5): dense maps from a static model and sparse COLMAP keypoints.

Both store **camera-axis z in world units** (the units of the camera centres in
``poses_bounds.npy``) and name their cameras.

``depth/all_depth.npz`` (dense, one map per camera, not per frame):
  depth [K, H, W] float32, mask [K, H, W] bool, weight [K, H, W] float32,
  cam_names [K] str, hw [2] int, c2w [K, 3, 4] float64 world cameras (OpenGL axes) the maps were
  rendered at, normalization: JSON of the renderer's SceneNormalization (informational).

``colmap_depth.npz`` (sparse, flat keypoint table):
  cam_index [M] int32, x [M], y [M] (continuous pixel coordinates, origin at the top-left corner),
  depth [M], weight [M] = 2 exp(-(e/ebar)^2), reproj_error [M], cam_names [K] str, hw [2] int,
  c2w [K, 3, 4] float64 world cameras (OpenGL axes) of the poses file the table was made with: a
  table is used only with a scene whose cameras sit at those poses (:func:`check_same_world`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import UserError
from dataLoader.atomic_io import save_npz


@dataclass
class DenseDepth:
    depth: np.ndarray
    mask: np.ndarray
    weight: np.ndarray
    cam_names: list[str]
    hw: tuple[int, int]
    c2w: np.ndarray
    normalization: dict

    def index_of(self, name: str) -> int:
        return self.cam_names.index(name)


@dataclass
class SparseDepth:
    cam_index: np.ndarray
    x: np.ndarray
    y: np.ndarray
    depth: np.ndarray
    weight: np.ndarray
    reproj_error: np.ndarray
    cam_names: list[str]
    hw: tuple[int, int]
    c2w: np.ndarray

    def check_cameras(self, path: Path, scene_cams, scene_c2w: np.ndarray) -> None:
        """UserError naming the file when it holds cameras the scene does not have, or the same names at
        other poses (a table from another SfM world). scene_c2w: the scene's world cameras [K, 3, 4]."""
        unknown = sorted(set(self.cam_names) - set(scene_cams))
        if unknown:
            raise UserError(f"{path}: cameras {unknown} are not in the scene ({list(scene_cams)})")
        rows = [list(scene_cams).index(n) for n in self.cam_names]
        check_same_world(path, self.cam_names, np.asarray(scene_c2w)[rows], self.c2w, np.asarray(scene_c2w))

    def pixel_xy(self, hw: tuple[int, int]) -> np.ndarray:
        """Keypoint pixel coordinates [M, 2] (x, y) rescaled from the table's size to an H x W image."""
        return np.stack([self.x * hw[1] / self.hw[1], self.y * hw[0] / self.hw[0]], -1)


def check_same_world(path: Path, names, world: np.ndarray, c2w_file: np.ndarray, rig_c2w: np.ndarray,
                     tol: float = 1e-3) -> None:
    """UserError unless the file's cameras c2w_file [K, 3, 4] sit at the scene's world [K, 3, 4]: rotations
    within ``tol``, centres within ``tol`` x the rig's extent (rig_c2w [N, 3, 4], all the scene's cameras)."""
    extent = max(float(np.ptp(rig_c2w[:, :, 3], axis=0).max()), 1e-6)
    rot_err = np.abs(world[:, :, :3] - c2w_file[:, :, :3]).max(axis=(1, 2))
    pos_err = np.abs(world[:, :, 3] - c2w_file[:, :, 3]).max(axis=1)
    bad = [n for n, r, p in zip(names, rot_err, pos_err) if r > tol or p > tol * extent]
    if bad:
        raise UserError(f"{path}: cameras {bad} sit at other poses than the scene's (depth from another SfM "
                        f"world or rig; regenerate it for this scene)")


def _open_npz(path: Path, keys: tuple[str, ...]) -> dict:
    if not path.is_file():
        raise UserError(f"{path}: depth file not found")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in keys if k not in f]
            if missing:
                raise UserError(f"{path}: missing arrays {missing}")
            return {k: f[k] for k in f.files}
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable depth file ({exc})") from None


def save_dense_depth(path: Path, d: DenseDepth) -> None:
    """Write ``all_depth.npz`` atomically (temp file + rename)."""
    save_npz(path, compressed=True, depth=d.depth.astype(np.float32), mask=d.mask.astype(bool),
                     weight=d.weight.astype(np.float32), cam_names=np.asarray(d.cam_names),
                     hw=np.asarray(d.hw, dtype=np.int64), c2w=np.asarray(d.c2w, dtype=np.float64),
                     normalization=np.asarray(json.dumps(d.normalization)))


def load_dense_depth(path: Path) -> DenseDepth:
    f = _open_npz(Path(path), ("depth", "mask", "weight", "cam_names", "hw", "c2w"))
    k = f["depth"].shape[0]
    if f["depth"].ndim != 3 or f["mask"].shape != f["depth"].shape or f["weight"].shape != f["depth"].shape:
        raise UserError(f"{path}: depth, mask and weight must all be [K, H, W]")
    if len(f["cam_names"]) != k or f["c2w"].shape != (k, 3, 4):
        raise UserError(f"{path}: cam_names/c2w do not match the {k} depth maps")
    norm = json.loads(str(f["normalization"])) if "normalization" in f else {}
    return DenseDepth(f["depth"], f["mask"].astype(bool), f["weight"], [str(n) for n in f["cam_names"]],
                      tuple(int(v) for v in f["hw"]), f["c2w"], norm)


def load_sparse_depth(path: Path) -> SparseDepth:
    keys = ("cam_index", "x", "y", "depth", "weight", "reproj_error", "cam_names", "hw")
    f = _open_npz(Path(path), keys)
    if "c2w" not in f:
        raise UserError(f"{path}: holds no camera poses (c2w), so its world cannot be checked; regenerate it "
                        f"with colmap2depth.py")
    m = f["depth"].shape[0]
    if any(f[k].shape != (m,) for k in keys[:6]):
        raise UserError(f"{path}: keypoint arrays must all have shape [M]")
    names = [str(n) for n in f["cam_names"]]
    if m and (f["cam_index"].min() < 0 or f["cam_index"].max() >= len(names)):
        raise UserError(f"{path}: cam_index out of range of cam_names")
    if f["c2w"].shape != (len(names), 3, 4):
        raise UserError(f"{path}: c2w must be [K, 3, 4] for its {len(names)} cameras, got {list(f['c2w'].shape)}")
    return SparseDepth(f["cam_index"].astype(np.int64), f["x"].astype(np.float64), f["y"].astype(np.float64),
                       f["depth"].astype(np.float64), f["weight"].astype(np.float64),
                       f["reproj_error"].astype(np.float64), names, tuple(int(v) for v in f["hw"]),
                       f["c2w"].astype(np.float64))


def save_depth_table(path: str | Path, table: dict[str, np.ndarray]) -> None:
    """Write ``colmap_depth.npz`` atomically (temp file + rename).

    Read it with :func:`load_sparse_depth`.
    """
    save_npz(path, **table)

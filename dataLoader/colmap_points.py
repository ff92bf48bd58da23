"""What a COLMAP model's 3D points say about a capture: camera-z of every observation, per-camera
near/far bounds, the rig's poses file content, and the sparse keypoint depth table (DS-NeRF,
``colmap_depth.npz``). Conventions as in :mod:`dataLoader.colmap` (OpenCV model poses, images by name).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pycolmap

from core.errors import UserError
from dataLoader.colmap import image_ids_for_cameras, model_w2c, opencv_w2c_to_opengl_c2w, shared_intrinsics

BOUNDS_PERCENTILES = (0.1, 99.9)  # LLFF's near/far percentiles of visible points' camera z


@dataclass(frozen=True)
class Observations:
    """Every (image, 3D point) observation of the selected images: image_index [M] (into
    the selected ids), xy [M, 2] COLMAP keypoint pixel coords (origin top-left corner,
    pixel centres at +0.5), xyz [M, 3] world point, error [M] its reprojection error (px);
    mean_error over all the model's points."""

    image_index: np.ndarray
    xy: np.ndarray
    xyz: np.ndarray
    error: np.ndarray
    mean_error: float


def observations(rec: pycolmap.Reconstruction, ids: Sequence[int]) -> Observations:
    """Gather the observations of images ``ids`` (see :class:`Observations`)."""
    points = sorted(rec.points3D.items())
    pids = np.array([pid for pid, _ in points], dtype=np.int64)
    xyz_all = np.array([p.xyz for _, p in points], dtype=np.float64).reshape(-1, 3)
    err_all = np.array([p.error for _, p in points], dtype=np.float64)
    idx, xy, ref = [], [], []
    for k, iid in enumerate(ids):
        pts = rec.images[iid].get_observation_points2D()
        idx.append(np.full(len(pts), k, dtype=np.int32))
        xy.append(np.array([p.xy for p in pts], dtype=np.float64).reshape(-1, 2))
        ref.append(np.array([p.point3D_id for p in pts], dtype=np.int64))
    row = np.searchsorted(pids, np.concatenate(ref))
    return Observations(np.concatenate(idx), np.concatenate(xy), xyz_all[row], err_all[row],
                        float(err_all.mean()))


def camera_z(w2c: np.ndarray, obs: Observations) -> np.ndarray:
    """[M] camera-axis depth (OpenCV z, world units) of each observation's 3D point."""
    rot, t = w2c[obs.image_index, :, :3], w2c[obs.image_index, :, 3]
    return np.einsum("mj,mj->m", rot[:, 2], obs.xyz) + t[:, 2]


def bounds_from_depths(z: np.ndarray, image_index: np.ndarray, k: int, names: Sequence[str],
                       percentiles: tuple[float, float] = BOUNDS_PERCENTILES, source: str = "model") -> np.ndarray:
    """[K, 2] near/far per camera: percentiles of its visible points' positive camera z."""
    out = np.zeros((k, 2))
    for i in range(k):
        zi = z[(image_index == i) & (z > 0)]
        if zi.size < 2:
            raise UserError(f"{source}: camera {names[i]} has only {zi.size} 3D points in front of it; "
                            "cannot set its near/far bounds")
        out[i] = np.percentile(zi, percentiles)
    return out


def ideal_pixel_coords(rec: pycolmap.Reconstruction, ids: Sequence[int], obs: Observations,
                       hwf: tuple[float, float, float]) -> np.ndarray:
    """[M, 2] keypoints re-expressed in the poses file's ideal pinhole (H, W, f, centred principal point).

    Each keypoint is unprojected with its own COLMAP camera (undistortion, principal
    point, size) and projected with ``hwf``, so ``rays.pixel_directions(H, W, f, xy)``
    is the observed ray. With a centred, undistorted camera of the same focal and size
    this is the identity; for another size it is the plain rescaling.
    """
    uv = np.empty_like(obs.xy)
    for k, iid in enumerate(ids):
        sel = obs.image_index == k
        uv[sel] = rec.cameras[rec.images[iid].camera_id].cam_from_img(obs.xy[sel])
    return np.array(hwf[1::-1]) / 2 + hwf[2] * uv


def keypoint_depth_table(rec: pycolmap.Reconstruction, ids: Sequence[int], names: Sequence[str],
                         hwf: tuple[float, float, float], bounds: np.ndarray) -> dict[str, np.ndarray]:
    """The ``colmap_depth.npz`` table (DS-NeRF sparse depth) for the cameras ``names``/``ids``.

    Returns cam_index [M] int32 (row of poses_bounds.npy), x, y [M] float32 pixel coords
    in the poses file's H x W (origin top-left corner, pixel centres at +0.5), depth [M]
    float32 camera z in world units, weight [M] float32 = 2 exp(-(e/ē)^2), reproj_error
    [M] float32 (e, px; ē = mean over the model's points), cam_names [K] str, hw [2]
    int32, focal [] float64. Only points with near <= depth <= far of their camera kept.
    """
    obs = observations(rec, ids)
    z = camera_z(model_w2c(rec, ids), obs)
    xy = ideal_pixel_coords(rec, ids, obs, hwf)
    near, far = bounds[obs.image_index, 0], bounds[obs.image_index, 1]
    keep = (z >= near) & (z <= far)
    e = obs.error[keep]
    e_mean = max(obs.mean_error, 1e-12)
    return {
        "cam_index": obs.image_index[keep].astype(np.int32),
        "x": xy[keep, 0].astype(np.float32),
        "y": xy[keep, 1].astype(np.float32),
        "depth": z[keep].astype(np.float32),
        "weight": (2.0 * np.exp(-((e / e_mean) ** 2))).astype(np.float32),
        "reproj_error": e.astype(np.float32),
        "cam_names": np.array(list(names), dtype=str),
        "hw": np.array(hwf[:2], dtype=np.int32),
        "focal": np.float64(hwf[2]),
    }


@dataclass(frozen=True)
class RigPoses:
    """What ``poses_bounds.npy`` holds for one capture, in the COLMAP world.

    names: [K] camera names (row order); c2w: [K, 3, 4] OpenGL; hwf: shared (H, W, f);
    bounds: [K, 2] near/far camera z (percentiles of the visible points).
    """

    names: tuple[str, ...]
    c2w: np.ndarray
    hwf: tuple[float, float, float]
    bounds: np.ndarray


def rig_poses(rec: pycolmap.Reconstruction, cams: Sequence[str], prefix: str = "", *,
              allow_average: bool = False, source: str = "model") -> RigPoses:
    """Poses, shared intrinsic and bounds of cameras ``cams`` (model images ``prefix + cam.*``)."""
    ids = image_ids_for_cameras(rec, cams, prefix, source)
    w2c = model_w2c(rec, ids)
    obs = observations(rec, ids)
    bounds = bounds_from_depths(camera_z(w2c, obs), obs.image_index, len(ids), cams, source=source)
    hwf = shared_intrinsics([rec.cameras[rec.images[i].camera_id] for i in ids],
                            allow_average=allow_average, source=source)
    return RigPoses(tuple(cams), opencv_w2c_to_opengl_c2w(w2c), hwf, bounds)

"""Depth targets as data (SPEC §5): depth files -> per-ray targets in the model's ray parameter.

Targets are loaded once, converted from world-unit camera z to the model's ray parameter with
the run's own normalization. Only static pixels are supervised (moving pixels are not pulled to
the background): dense targets are masked by the batch's dynamic label in the objective, sparse
keypoints on dynamic pixels are dropped here.

- :class:`DenseDepthTargets`: one map per training camera (``depth/all_depth.npz``); the dataset
  gathers the targets of the colour batch's own rays with the colours.
- :class:`KeypointTargets`: COLMAP keypoints (``colmap_depth.npz``) as rays with targets; a
  :class:`dataLoader.samplers.KeypointSampler` draws a batch of them each iteration.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.errors import UserError
from dataLoader.depth_files import check_same_world, load_dense_depth, load_sparse_depth
from dataLoader.depth_space import camera_z_to_ray_param
from dataLoader.rays import pose_rays

log = logging.getLogger(__name__)

DEPTH_SOURCES = ("none", "static_model", "video_mvs", "colmap")
DENSE_SOURCES = ("static_model", "video_mvs")  # dense maps (depthmap_npy_path) from a static model or plane sweep


@dataclass(frozen=True)
class DepthTargetOptions:
    """Which depth file supervises the static branch, and how its targets are built."""

    source: str = "none"  # none | static_model, video_mvs (dense maps) | colmap (sparse keypoints)
    path: Path | None = None  # the depth file (absolute or relative to the working directory)
    rel_sigma: float = 0.0  # target std-dev as a fraction of depth (ds_kl); the config's depth_sigma
    static_threshold: float = 0.0  # keypoints where the blurred temporal std exceeds this are dropped


def keypoint_targets(data, cam: int, xy: np.ndarray, z_world: np.ndarray, rel_sigma: np.ndarray):
    """Rays through pixel coords xy [M, 2] of camera ``cam`` -> (origins, dirs [M, 3], t [M], sigma_t [M])."""
    rays = pose_rays(data.c2w[cam], data.h, data.w, data.focal, data.normalization, torch.from_numpy(xy))
    o, d = rays.cam_o, rays.cam_d
    z = torch.from_numpy(z_world)
    sig = torch.from_numpy(rel_sigma)
    norm = data.normalization
    t = camera_z_to_ray_param(z, o, d, norm)
    t_near = camera_z_to_ray_param(z * (1 - sig).clamp_min(0.05), o, d, norm)
    t_far = camera_z_to_ray_param(z * (1 + sig), o, d, norm)
    sigma_t = (t_far - t_near).abs() / 2
    return rays.origins, rays.dirs, t.float(), sigma_t.float().clamp_min(1e-5)


class DenseDepthTargets:
    """Per-train-ray targets: t [Nr], sigma [Nr], weight [Nr] (0 = no depth)."""

    def __init__(self, opts: DepthTargetOptions, data):
        path = opts.path
        dense = load_dense_depth(path)
        if tuple(dense.hw) != (data.h, data.w):
            raise UserError(f"{path}: depth maps are {dense.hw[1]}x{dense.hw[0]} but training images are "
                            f"{data.w}x{data.h}")
        missing = [data.cam_names[k] for k in data.train_idx if data.cam_names[k] not in dense.cam_names]
        if missing:
            raise UserError(f"{path}: no depth for training cameras {missing} (file has {dense.cam_names})")
        t, sig, w = [], [], []
        for k in data.train_idx:
            i = dense.index_of(data.cam_names[k])
            check_same_world(path, [data.cam_names[k]], data.rig.c2w[k:k + 1], dense.c2w[i:i + 1], data.rig.c2w)
            xy = _pixel_grid(data.h, data.w)
            z = dense.depth[i].reshape(-1).astype(np.float64)
            valid = dense.mask[i].reshape(-1) & np.isfinite(z) & (z > 0)
            if not valid.any():
                log.warning("%s: no usable depth pixel for training camera %s (mask empty or depth <= 0)", path,
                            data.cam_names[k])
            z = np.where(valid, z, 1.0)
            rel = np.full_like(z, opts.rel_sigma)
            _, _, tk, sk = keypoint_targets(data, k, xy, z, rel)
            t.append(tk)
            sig.append(sk)
            w.append(torch.from_numpy(np.where(valid, dense.weight[i].reshape(-1), 0.0)).float())
        self.t, self.sigma, self.weight = torch.cat(t), torch.cat(sig), torch.cat(w)
        coverage = 100 * float((self.weight > 0).float().mean())
        log.info("dense depth: %s, %.1f%% of training pixels supervised", path, coverage)

    def gather(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Train ray indices [B] -> (t, sigma_t, weight) [B] each."""
        return self.t[idx], self.sigma[idx], self.weight[idx]


class KeypointTargets:
    """Keypoint rays of the training cameras' static pixels: origins/dirs [M, 3], t, sigma, weight [M]."""

    def __init__(self, opts: DepthTargetOptions, data, std: np.ndarray):
        path = opts.path
        sp = load_sparse_depth(path)
        sp.check_cameras(path, data.cam_names, data.rig.c2w)
        xy_all = sp.pixel_xy((data.h, data.w))
        mean_err = max(float(sp.reproj_error.mean()), 1e-6) if len(sp.reproj_error) else 1.0
        parts = []
        for k in data.train_idx:
            name = data.cam_names[k]
            if name not in sp.cam_names:
                continue
            sel = sp.cam_index == sp.cam_names.index(name)
            xy = xy_all[sel]
            px = np.clip(xy.astype(int), 0, [data.w - 1, data.h - 1])
            static = std[k, px[:, 1], px[:, 0]] <= opts.static_threshold
            rel = opts.rel_sigma * (1 + sp.reproj_error[sel] / mean_err)
            o, d, t, s = keypoint_targets(data, k, xy[static], sp.depth[sel][static], rel[static])
            parts.append((o, d, t, s, torch.from_numpy(sp.weight[sel][static]).float()))
        if not parts or sum(len(p[2]) for p in parts) == 0:
            raise UserError(f"{path}: no keypoints on static pixels of the training cameras")
        self.origins, self.dirs, self.t, self.sigma, self.weight = (torch.cat(x) for x in zip(*parts))
        log.info("COLMAP depth: %s, %d keypoints on static pixels of %d training cameras", path, len(self.t),
                 len(parts))

    def __len__(self) -> int:
        return len(self.t)


def _pixel_grid(h: int, w: int) -> np.ndarray:
    """Pixel-centre coordinates [H*W, 2] (x = column + 0.5, y = row + 0.5), row-major."""
    ys, xs = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    return np.stack([xs.reshape(-1), ys.reshape(-1)], -1)

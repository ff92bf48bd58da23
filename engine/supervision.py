"""Depth supervision of the static branch during training (SPEC §5).

Targets are loaded once, converted from world-unit camera z to the model's ray parameter with
the run's own normalization, and added as named loss terms in the same backward pass as the
colour loss. Only static rays are supervised (moving pixels are not pulled to the background).

- :class:`DenseDepthSupervision`: one map per training camera (``depth/all_depth.npz``); the
  targets of the colour batch's own rays are used.
- :class:`SparseDepthSupervision`: COLMAP keypoints (``colmap_depth.npz``); a separate batch of
  keypoint rays (``depth_batch_fraction`` of the ray batch) is rendered each iteration.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

from dataLoader.depth_files import check_same_world, load_dense_depth, load_sparse_depth
from dataLoader.depth_space import camera_z_to_ray_param
from dataLoader.errors import UserError
from dataLoader.rays import camera_rays, ndc_rays, pixel_directions
from dataLoader.samplers import EpochSampler
from models import losses
from models.types import RayBatch

log = logging.getLogger(__name__)


def depth_weight_at(cfg: argparse.Namespace, step: int) -> float:
    """depth_lambda decayed exponentially to depth_lambda * depth_lambda_decay at the last iteration."""
    return cfg.depth_lambda * cfg.depth_lambda_decay ** (step / max(cfg.n_iters, 1))


def keypoint_rays(data, cam: int, xy: np.ndarray, z_world: np.ndarray, rel_sigma: np.ndarray):
    """Rays through pixel coords xy [M, 2] of camera ``cam`` -> (origins, dirs [M, 3], t [M], sigma_t [M])."""
    dirs_cam = pixel_directions(data.h, data.w, data.focal, torch.from_numpy(xy))
    o, d = camera_rays(torch.as_tensor(data.c2w[cam], dtype=torch.float64), dirs_cam)
    z = torch.from_numpy(z_world)
    sig = torch.from_numpy(rel_sigma)
    norm = data.normalization
    t = camera_z_to_ray_param(z, o, d, norm)
    t_near = camera_z_to_ray_param(z * (1 - sig).clamp_min(0.05), o, d, norm)
    t_far = camera_z_to_ray_param(z * (1 + sig), o, d, norm)
    sigma_t = (t_far - t_near).abs() / 2
    if norm.ndc:
        ph, pw, pf = norm.ndc_hwf
        o, d = ndc_rays(ph, pw, pf, o, d)
    return o.float(), d.float(), t.float(), sigma_t.float().clamp_min(1e-5)


def _depth_loss(cfg, out, target, sigma, weight) -> torch.Tensor:
    if cfg.depth_loss == "ds_kl":
        # A Gaussian narrower than the sample spacing is not resolved: floor sigma at the ray's mean interval.
        sigma = torch.maximum(sigma, out.dt.detach().float().mean(-1))
        return losses.ds_kl_loss(out.weights.float(), out.t, out.dt, target, sigma, weight)
    return losses.depth_mse(out.static_depth.float(), target, weight)


def _resolve(datadir: str, rel: str) -> Path:
    p = Path(rel)
    return p if p.is_absolute() else Path(datadir) / p


class DenseDepthSupervision:
    """Per-train-ray targets: t [Nr], sigma_t [Nr], weight [Nr] (0 = no depth)."""

    def __init__(self, cfg: argparse.Namespace, data, device):
        self.cfg = cfg
        self.last_fraction: torch.Tensor | None = None
        path = _resolve(cfg.datadir, cfg.depthmap_npy_path)
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
            rel = np.full_like(z, cfg.depth_sigma)
            _, _, tk, sk = keypoint_rays(data, k, xy, z, rel)
            t.append(tk)
            sig.append(sk)
            w.append(torch.from_numpy(np.where(valid, dense.weight[i].reshape(-1), 0.0)).float())
        self.t, self.sigma, self.weight = torch.cat(t), torch.cat(sig), torch.cat(w)
        coverage = 100 * float((self.weight > 0).float().mean())
        log.info("dense depth: %s, %.1f%% of training pixels supervised", path, coverage)

    def state_dict(self) -> dict:
        return {}  # stateless: targets follow the colour batch

    def load_state_dict(self, state: dict) -> None:
        pass

    def annotate(self, batch: RayBatch, idx: np.ndarray) -> RayBatch:
        i = torch.from_numpy(np.asarray(idx))
        batch.depth, batch.depth_sigma, batch.depth_weight = self.t[i], self.sigma[i], self.weight[i]
        return batch

    def loss_terms(self, model, batch: RayBatch, out, label: torch.Tensor, step: int) -> dict:
        weight = batch.depth_weight * (~label).float()
        self.last_fraction = (weight > 0).float().mean()  # supervised share of the batch (a device tensor)
        return {"depth": depth_weight_at(self.cfg, step) * _depth_loss(self.cfg, out, batch.depth,
                                                                       batch.depth_sigma, weight)}


class SparseDepthSupervision:
    """Keypoint rays of the training cameras: origins/dirs [M, 3], t, sigma_t, weight [M]."""

    def __init__(self, cfg: argparse.Namespace, data, device):
        self.cfg, self.device = cfg, device
        self.last_fraction: torch.Tensor | None = None
        path = _resolve(cfg.datadir, cfg.colmap_depth_path)
        sp = load_sparse_depth(path)
        sp.check_cameras(path, data.cam_names, data.rig.c2w)
        xy_all = sp.pixel_xy((data.h, data.w))
        std = data.cache.std
        mean_err = max(float(sp.reproj_error.mean()), 1e-6) if len(sp.reproj_error) else 1.0
        parts = []
        for k in data.train_idx:
            name = data.cam_names[k]
            if name not in sp.cam_names:
                continue
            sel = sp.cam_index == sp.cam_names.index(name)
            xy = xy_all[sel]
            px = np.clip(xy.astype(int), 0, [data.w - 1, data.h - 1])
            static = std[k, px[:, 1], px[:, 0]] <= cfg.temporal_variance_threshold
            rel = cfg.depth_sigma * (1 + sp.reproj_error[sel] / mean_err)
            o, d, t, s = keypoint_rays(data, k, xy[static], sp.depth[sel][static], rel[static])
            parts.append((o, d, t, s, torch.from_numpy(sp.weight[sel][static]).float()))
        if not parts or sum(len(p[2]) for p in parts) == 0:
            raise UserError(f"{path}: no keypoints on static pixels of the training cameras")
        # moved to the device once: each iteration only indexes them there
        self.origins, self.dirs, self.t, self.sigma, self.weight = (torch.cat(x).to(device) for x in zip(*parts))
        n_batch = max(1, int(cfg.batch_size * cfg.depth_batch_fraction))
        self.sampler = EpochSampler(len(self.t), n_batch, cfg.seed + 2)
        log.info("COLMAP depth: %s, %d keypoints on static pixels of %d training cameras", path, len(self.t),
                 len(parts))

    def state_dict(self) -> dict:
        return {"sampler": self.sampler.state_dict()}  # keypoint-batch position, for exact resume

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state["sampler"])

    def annotate(self, batch: RayBatch, idx: np.ndarray) -> RayBatch:
        return batch

    def loss_terms(self, model, batch: RayBatch, out, label: torch.Tensor, step: int) -> dict:
        i = torch.from_numpy(self.sampler.next()).to(self.device)
        rays = RayBatch(self.origins[i], self.dirs[i])
        kp = model(rays, jitter=True, ray_dynamic=torch.zeros(len(i), dtype=torch.bool, device=self.device))
        loss = _depth_loss(self.cfg, kp, self.t[i], self.sigma[i], self.weight[i])
        self.last_fraction = (self.weight[i] > 0).float().sum() / len(batch.origins)  # per colour-batch ray
        return {"depth": depth_weight_at(self.cfg, step) * loss}


def _pixel_grid(h: int, w: int) -> np.ndarray:
    """Pixel-centre coordinates [H*W, 2] (x = column + 0.5, y = row + 0.5), row-major."""
    ys, xs = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    return np.stack([xs.reshape(-1), ys.reshape(-1)], -1)


SOURCES = {"static_model": DenseDepthSupervision, "colmap": SparseDepthSupervision}


def build_depth_supervision(cfg: argparse.Namespace, data, device):
    """-> a supervision object (``annotate`` + ``loss_terms``) or None when ``use_depth`` is 0."""
    if not cfg.use_depth:
        return None
    return SOURCES["colmap" if cfg.use_colmap_depth else "static_model"](cfg, data, device)

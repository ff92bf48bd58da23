"""Chunked rendering of cameras with bounded memory."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dataLoader.dataset import rays_from_pose
from dataLoader.depth_space import ray_param_to_camera_z
from dataLoader.poses import SceneNormalization
from dataLoader.rays import camera_rays, pixel_directions
from models.types import RayBatch


@dataclass
class CameraRender:
    """A camera's render. rgb: float32 [T, H, W, 3]; depth: float32 [T, H, W] world-unit camera z;
    static_rgb: [H, W, 3]; static_depth: [H, W] world-unit camera z; acc: [H, W]; dynamic: [H, W] bool."""

    rgb: np.ndarray
    depth: np.ndarray
    static_rgb: np.ndarray
    static_depth: np.ndarray
    acc: np.ndarray
    dynamic: np.ndarray


def chunk_size(model, budget: int = 2 ** 22) -> int:
    """Rays per chunk so that rays x samples x frames stays near ``budget`` elements."""
    per_ray = model.n_samples * max(1, model.cfg.n_frames if not model.cfg.static_only else 1)
    return int(max(64, min(16384, budget // per_ray)))


@torch.no_grad()
def render_rays(model, origins: torch.Tensor, dirs: torch.Tensor, device, chunk: int | None = None) -> dict:
    """Render [N, 3] rays in chunks -> dict of CPU tensors (rgb [N,T,3], depth [N,T], static_rgb [N,3],
    static_depth [N], acc [N], dynamic [N])."""
    chunk = chunk or chunk_size(model)
    parts: dict[str, list] = {k: [] for k in ("rgb", "depth", "static_rgb", "static_depth", "acc", "dynamic")}
    for i in range(0, origins.shape[0], chunk):
        out = model(RayBatch(origins[i:i + chunk].to(device), dirs[i:i + chunk].to(device)))
        parts["rgb"].append(out.rgb.clamp(0, 1).cpu())
        parts["depth"].append(out.depth.cpu())
        parts["static_rgb"].append(out.static_rgb.clamp(0, 1).cpu())
        parts["static_depth"].append(out.static_depth.cpu())
        parts["acc"].append(out.acc.cpu())
        parts["dynamic"].append(out.dynamic_mask.cpu())
    return {k: torch.cat(v) for k, v in parts.items()}


def render_pose(model, c2w_norm: np.ndarray, h: int, w: int, focal: float, norm: SceneNormalization,
                device) -> CameraRender:
    """Render one normalized camera pose [3, 4] at h x w with the given focal (pixels)."""
    origins, dirs = rays_from_pose(c2w_norm, h, w, focal, norm)
    out = render_rays(model, origins, dirs, device)
    wo, wd = camera_rays(torch.as_tensor(c2w_norm, dtype=torch.float64), pixel_directions(h, w, focal))
    z = ray_param_to_camera_z(out["depth"].double(), wo, wd, norm).float()
    zs = ray_param_to_camera_z(out["static_depth"].double(), wo, wd, norm).float()
    n_t = out["rgb"].shape[1]
    return CameraRender(
        rgb=out["rgb"].view(h, w, n_t, 3).permute(2, 0, 1, 3).numpy(),
        depth=z.view(h, w, n_t).permute(2, 0, 1).numpy(),
        static_rgb=out["static_rgb"].view(h, w, 3).numpy(),
        static_depth=zs.view(h, w).numpy(),
        acc=out["acc"].view(h, w).numpy(),
        dynamic=out["dynamic"].view(h, w).numpy(),
    )


def render_camera_video(model, norm: SceneNormalization, cameras: dict, cam_num: int, out_path, device,
                        fps: float = 30.0) -> int:
    """Render camera ``cam_num`` of a checkpoint's camera table to an mp4; returns the frame count."""
    from dataLoader.video_io import write_video

    h, w = cameras["hw"]
    render = render_pose(model, np.asarray(cameras["c2w"][cam_num]), h, w, cameras["focal"], norm, device)
    return write_video(out_path, (render.rgb * 255).round().astype(np.uint8), fps=fps)

"""Pixel rays, NDC conversion and depth-space conversions (the only copy).

Camera convention: OpenGL axes [right, up, backwards]; a camera looks along -z.
Pixel (i, j) (column, row) has its centre at (i + 0.5, j + 0.5). Directions are
*unnormalized* with camera-z component -1, so the ray parameter of a world ray
equals camera-axis depth (in whatever units the origin is expressed in).

NDC (forward-facing scenes, near plane z = -1): a normalized-world point with
z = Z < -1 sits at NDC ray parameter ``t = 1 + 1/Z``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dataLoader.poses import SceneNormalization


def pixel_directions(h: int, w: int, focal: float, xy: torch.Tensor | None = None) -> torch.Tensor:
    """Camera-frame directions with z = -1.

    xy: optional [N, 2] continuous pixel coordinates (x = column, y = row, origin at
    the image's top-left corner). Without it, all pixel centres row-major.
    Returns [N, 3] (N = h*w when xy is None).
    """
    if xy is None:
        js, is_ = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                                 indexing="ij")
        xy = torch.stack([is_.reshape(-1) + 0.5, js.reshape(-1) + 0.5], dim=-1)
    xy = xy.to(torch.float64)
    x = (xy[:, 0] - w / 2) / focal
    y = -(xy[:, 1] - h / 2) / focal
    return torch.stack([x, y, -torch.ones_like(x)], dim=-1)


def camera_rays(c2w: torch.Tensor, dirs_cam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """c2w: [3, 4]; dirs_cam: [N, 3] -> origins [N, 3], directions [N, 3] (unnormalized, cam-z = -1)."""
    dirs = dirs_cam.to(c2w) @ c2w[:, :3].T
    origins = c2w[:, 3].expand_as(dirs)
    return origins, dirs


def ndc_rays(h: float, w: float, focal: float, origins: torch.Tensor, dirs: torch.Tensor,
             near: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """World rays -> NDC rays. [N, 3] each. The NDC direction's z is 2*near/|o_z| ... = 2 for near=1.

    NDC t in [0, 1) covers world depth from the near plane to infinity.
    """
    t0 = -(near + origins[:, 2]) / dirs[:, 2]
    o = origins + t0[:, None] * dirs
    ox, oy, oz = o.unbind(-1)
    dx, dy, dz = dirs.unbind(-1)
    o_ndc = torch.stack([-2 * focal / w * ox / oz, -2 * focal / h * oy / oz, 1 + 2 * near / oz], -1)
    d_ndc = torch.stack([
        -2 * focal / w * (dx / dz - ox / oz),
        -2 * focal / h * (dy / dz - oy / oz),
        -2 * near / oz,
    ], -1)
    return o_ndc, d_ndc


@dataclass(frozen=True)
class PoseRays:
    """Rays through pixels of one normalized camera (the one ray recipe of the toolkit).

    origins, dirs: [N, 3] float32 in the model's ray space (NDC when the normalization says so);
    cam_o, cam_d: [N, 3] float64 normalized-world camera rays (cam-z = -1), for depth conversions.
    """

    origins: torch.Tensor
    dirs: torch.Tensor
    cam_o: torch.Tensor
    cam_d: torch.Tensor


def pose_rays(c2w_norm: np.ndarray, h: int, w: int, focal: float, norm: SceneNormalization,
              xy: torch.Tensor | None = None) -> PoseRays:
    """Normalized camera [3, 4] -> rays through pixel coords xy [N, 2] (default: every pixel centre, row-major)."""
    cam_o, cam_d = camera_rays(torch.as_tensor(c2w_norm, dtype=torch.float64), pixel_directions(h, w, focal, xy))
    origins, dirs = cam_o, cam_d
    if norm.ndc:
        ph, pw, pf = norm.ndc_hwf
        origins, dirs = ndc_rays(ph, pw, pf, cam_o, cam_d)
    return PoseRays(origins.float(), dirs.float(), cam_o, cam_d)


def world_z_to_ndc_t(z: torch.Tensor, near: float = 1.0) -> torch.Tensor:
    """Normalized-world z (< -near) -> NDC ray parameter, t = 1 + near / z."""
    return 1 + near / z


def ndc_t_to_world_z(t: torch.Tensor, near: float = 1.0, eps: float = 1e-6) -> torch.Tensor:
    """Inverse of :func:`world_z_to_ndc_t`; t is clamped below 1 (t = 1 is infinity)."""
    return -near / (1 - t).clamp_min(eps)

"""Depth-space conversions between files (world-unit camera z) and model ray parameters (SPEC §4).

Inputs are camera rays in *normalized world* coordinates before any NDC warp:
origins [N, 3] and directions [N, 3] with camera-z component -1 (see ``dataLoader.rays``), so a
point at normalized camera depth s is ``o + s d``. World units = normalized units / scale.
"""
from __future__ import annotations

import torch

from dataLoader.poses import SceneNormalization
from dataLoader.rays import ndc_t_to_world_z, world_z_to_ndc_t


def camera_z_to_ray_param(z_world: torch.Tensor, origins: torch.Tensor, dirs: torch.Tensor,
                          norm: SceneNormalization) -> torch.Tensor:
    """World-unit camera z [N] -> the model's ray parameter [N] (NDC t or normalized metric t)."""
    s = z_world * norm.scale
    if not norm.ndc:
        return s
    return world_z_to_ndc_t(origins[:, 2] + s * dirs[:, 2])


def ray_param_to_camera_z(t: torch.Tensor, origins: torch.Tensor, dirs: torch.Tensor,
                          norm: SceneNormalization) -> torch.Tensor:
    """Inverse of :func:`camera_z_to_ray_param`. t: [N] or [N, T] (extra dims broadcast)."""
    if not norm.ndc:
        return t / norm.scale
    shape = (-1,) + (1,) * (t.ndim - 1)
    oz, dz = origins[:, 2].reshape(shape), dirs[:, 2].reshape(shape)
    s = (ndc_t_to_world_z(t) - oz) / dz
    return s / norm.scale

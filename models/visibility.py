"""Which voxels the training cameras can see: the bounded-scene half of the alpha mask.

In a bounded scene (an inward rig in a room) much of the aabb is never observed: space behind the
walls, outside every frustum. Nothing supervises the density there, so it keeps its random initial
value and the occupancy test alone keeps it, which also stops :meth:`MixVoxels.shrink` from cropping
the aabb. A voxel counts as *seen* when some training ray reaches a sample inside it with static
transmittance above ``min_transmittance`` (free space in front of the first surface, and the surface
itself). The alpha mask of a bounded model keeps voxels that are occupied **and** seen (dilated by
one voxel, as samples are about two voxels apart).

Only static density is used (no colour, no time heads); rays come from the training cameras, at most
``max_rays`` of them (an evenly spread, seeded subset), so the cost is a fraction of one epoch.
"""
from __future__ import annotations

import torch

from models import volume_rendering as vr
from models.alpha_mask import dilate_and_threshold
from models.types import RayBatch


def voxel_index(xyz: torch.Tensor, aabb: torch.Tensor, resolution: list[int]) -> torch.Tensor:
    """[P, 3] ray-space points inside aabb [2, 3] -> [P] flat index into a [Rz, Ry, Rx] grid (nearest voxel)."""
    res = torch.tensor(resolution, device=xyz.device)
    ijk = ((xyz - aabb[0]) / (aabb[1] - aabb[0]) * (res - 1)).round().long()
    ijk = torch.minimum(ijk.clamp_min(0), res - 1)
    return (ijk[:, 2] * res[1] + ijk[:, 1]) * res[0] + ijk[:, 0]


@torch.no_grad()
def seen_grid(model, origins: torch.Tensor, dirs: torch.Tensor, resolution: list[int], max_rays: int = 1 << 18,
              chunk: int = 4096, min_transmittance: float = 1e-3, seed: int = 0) -> torch.Tensor:
    """origins, dirs: [N, 3] training rays (ray space) -> [Rz, Ry, Rx] bool grid over ``model.aabb``."""
    device = model.aabb.device
    n = origins.shape[0]
    if n > max_rays:
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(n, generator=g)[:max_rays].sort().values
        origins, dirs = origins[idx], dirs[idx]
    rx, ry, rz = resolution
    seen = torch.zeros(rz * ry * rx, dtype=torch.bool, device=device)
    for i in range(0, origins.shape[0], chunk):
        rays = RayBatch(origins[i:i + chunk].to(device), dirs[i:i + chunk].to(device))
        t, dt, xyz, valid = model.sample_points(rays, jitter=False)
        sigma = xyz.new_zeros(t.shape)
        if valid.any():
            sigma[valid] = model.density_act(model.density(model.normalize_coords(xyz[valid])))
        dist = dt * rays.directions.norm(dim=-1, keepdim=True) * model.cfg.distance_scale
        alpha = vr.alpha_from_sigma(sigma, dist)
        trans = vr.transmittance(alpha)
        inside = ((xyz >= model.aabb[0]) & (xyz <= model.aabb[1])).all(-1) & (trans > min_transmittance)
        if inside.any():
            seen[voxel_index(xyz[inside], model.aabb, resolution)] = True
    return dilate_and_threshold(seen.view(rz, ry, rx).float(), 0.0)

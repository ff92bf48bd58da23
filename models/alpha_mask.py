"""Occupancy ("alpha") mask: a binary grid over an aabb, queried trilinearly (> 0 = occupied)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


class AlphaMask:
    """Binary occupancy grid.

    grid: [Rz, Ry, Rx] bool; aabb: [2, 3] (min, max corners) in ray space.
    """

    def __init__(self, aabb: torch.Tensor, grid: torch.Tensor):
        self.aabb = aabb.float()
        self.grid = grid.bool()
        self._volume = self.grid.float()[None, None]

    def to(self, device) -> AlphaMask:
        return AlphaMask(self.aabb.to(device), self.grid.to(device))

    def query(self, xyz: torch.Tensor) -> torch.Tensor:
        """xyz: [P, 3] ray-space points -> [P] bool occupied."""
        norm = (xyz - self.aabb[0]) / (self.aabb[1] - self.aabb[0]) * 2 - 1
        vol = self._volume.to(xyz.device)
        val = F.grid_sample(vol, norm.view(1, -1, 1, 1, 3).to(vol.dtype), align_corners=True)
        return val.view(-1) > 0

    def state_dict(self) -> dict:
        return {"aabb": self.aabb.cpu(), "grid": self.grid.cpu()}

    @staticmethod
    def from_state_dict(state: dict) -> AlphaMask:
        return AlphaMask(state["aabb"], state["grid"])


def dilate_and_threshold(alpha: torch.Tensor, threshold: float) -> torch.Tensor:
    """alpha: [Rz, Ry, Rx] -> bool grid, 3x3x3 max-pooled then thresholded."""
    pooled = F.max_pool3d(alpha[None, None], kernel_size=3, padding=1, stride=1)[0, 0]
    return pooled > threshold


def occupied_box(grid: torch.Tensor, aabb: torch.Tensor) -> torch.Tensor | None:
    """Bounding box [2, 3] of the occupied voxels of grid [Rz, Ry, Rx] over aabb, or None if empty."""
    idx = grid.nonzero()
    if idx.numel() == 0:
        return None
    res = torch.tensor(grid.shape[::-1], dtype=torch.float32, device=aabb.device)
    units = (aabb[1] - aabb[0]) / (res - 1)
    lo = idx.min(0).values.flip(0).float()
    hi = idx.max(0).values.flip(0).float()
    return torch.stack([aabb[0] + lo * units, aabb[0] + hi * units])

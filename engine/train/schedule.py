"""Schedules as data: grid resolution growth, alpha-mask updates, learning-rate, TV and depth-weight factors."""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np
import torch


def n_to_reso(n_voxels: int, aabb: torch.Tensor) -> list[int]:
    """Voxel count -> per-axis resolution [Rx, Ry, Rz] with cubic voxels over aabb [2, 3]."""
    extent = (aabb[1] - aabb[0]).double()
    voxel = (extent.prod() / n_voxels) ** (1 / 3)
    return [max(2, int(v)) for v in (extent / voxel).round().long().tolist()]


@dataclass(frozen=True)
class GridSchedule:
    """When the grid grows and the alpha mask is rebuilt (iterations counted from 1)."""

    n_voxel_init: int
    n_voxel_final: int
    upsample_at: tuple[int, ...]
    alpha_mask_at: tuple[int, ...]

    def voxel_counts(self) -> list[int]:
        """Voxel count after each upsample: log-linear from init to final."""
        k = len(self.upsample_at)
        counts = np.exp(np.linspace(np.log(self.n_voxel_init), np.log(self.n_voxel_final), k + 1))[1:]
        return [int(round(c)) for c in counts]

    def upsample_count(self, step: int) -> int | None:
        """Voxel count to upsample to after ``step`` iterations, or None."""
        if step in self.upsample_at:
            return self.voxel_counts()[self.upsample_at.index(step)]
        return None

    def alpha_mask_update(self, step: int) -> tuple[bool, bool]:
        """(update the mask now, shrink the aabb now) after ``step`` iterations."""
        if step not in self.alpha_mask_at:
            return False, False
        return True, step == self.alpha_mask_at[0]


def lr_factor(step: int, n_iters: int, kind: str, target_ratio: float = 0.1) -> float:
    """Learning-rate factor at ``step``: cosine lr0*cos(pi/2 * t/N) floored at 1e-3, or exponential."""
    frac = min(step / max(n_iters, 1), 1.0)
    if kind == "cosine":
        return max(math.cos(math.pi / 2 * frac), 1e-3)
    return target_ratio ** frac


def upsample_reset_factor(step: int, n_iters: int, kind: str, target_ratio: float,
                          upsample_at: tuple[int, ...]) -> float:
    """MixVoxels' lr restart at each upsample u: lr0 * f(step) / f(u), f the decay factor (1 before any)."""
    k = bisect.bisect_right(sorted(upsample_at), step)
    f = lr_factor(step, n_iters, kind, target_ratio)
    if k == 0:
        return f
    u = sorted(upsample_at)[k - 1]
    return min(1.0, f / lr_factor(u, n_iters, kind, target_ratio))


def tv_scale(step: int, n_iters: int, kind: str, target_ratio: float, scale: float) -> float:
    """TV-loss scale at ``step``: ``scale`` (the config's tv_scale) times the learning-rate factor."""
    return scale * lr_factor(step, n_iters, kind, target_ratio)


def depth_weight(step: int, n_iters: int, weight: float, decay: float) -> float:
    """Depth-loss weight: ``weight`` decayed exponentially to ``weight * decay`` at the last iteration."""
    return weight * decay ** (step / max(n_iters, 1))


def blur_sigma(step: int, n_iters: int, sigma0: float, until: float) -> float:
    """Colour-target blur (pixels) at ``step``: ``sigma0`` falling linearly to 0 at ``until`` * n_iters."""
    end = until * n_iters
    if sigma0 <= 0 or step >= end:
        return 0.0
    return sigma0 * (1 - step / end)

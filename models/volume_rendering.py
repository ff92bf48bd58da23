"""Pure functions of volume rendering: sampling along rays, weights, compositing.

Everything here is model-free and tested by hand-computed cases.
"""
from __future__ import annotations

import torch


def stratified_samples(n_rays: int, n_samples: int, near: torch.Tensor | float, far: torch.Tensor | float,
                       jitter: bool, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample positions t: [N, S], one per equal bin of [near, far].

    With ``jitter`` every ray gets its own uniform offset inside each bin (per-ray, per-bin);
    without it the bin centres are used. ``near``/``far`` may be floats or [N] tensors.
    """
    near = torch.as_tensor(near, dtype=torch.float32, device=device).reshape(-1, 1)
    far = torch.as_tensor(far, dtype=torch.float32, device=device).reshape(-1, 1)
    edges = torch.linspace(0, 1, n_samples + 1, device=device)
    if jitter:
        u = torch.rand(n_rays, n_samples, device=device, generator=generator)
    else:
        u = torch.full((n_rays, n_samples), 0.5, device=device)
    frac = edges[:-1] + u * (edges[1:] - edges[:-1])
    return near + (far - near) * frac


def interval_lengths(t: torch.Tensor, near: torch.Tensor | float, far: torch.Tensor | float) -> torch.Tensor:
    """Interval length of each sorted sample t: [N, S] -> dt: [N, S].

    Sample i stands for the interval between the midpoints with its neighbours; the first
    interval starts at ``near`` and the last ends at ``far`` (no zero-length last interval).
    The lengths sum to far - near for every ray.
    """
    near = torch.as_tensor(near, dtype=t.dtype, device=t.device).reshape(-1, 1).expand(t.shape[0], 1)
    far = torch.as_tensor(far, dtype=t.dtype, device=t.device).reshape(-1, 1).expand(t.shape[0], 1)
    mids = 0.5 * (t[:, 1:] + t[:, :-1])
    bounds = torch.cat([near, mids, far], dim=1)
    return bounds[:, 1:] - bounds[:, :-1]


def merge_samples(t_uniform: torch.Tensor, t_extra: torch.Tensor, near, far) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth-guided sampling helper: merge [N, S1] and [N, S2] samples, sort, recompute intervals.

    Returns t: [N, S1+S2] sorted and dt: [N, S1+S2] from the sorted positions.
    """
    lo = torch.as_tensor(near, dtype=t_extra.dtype, device=t_extra.device).reshape(-1, 1)
    hi = torch.as_tensor(far, dtype=t_extra.dtype, device=t_extra.device).reshape(-1, 1)
    t = torch.cat([t_uniform, torch.minimum(torch.maximum(t_extra, lo), hi)], dim=1)
    t, _ = torch.sort(t, dim=1)
    return t, interval_lengths(t, near, far)


def alpha_from_sigma(sigma: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """alpha = 1 - exp(-sigma * dist); sigma, dist broadcastable, e.g. [N, S] or [N, S, T]."""
    return 1.0 - torch.exp(-sigma * dist)


def transmittance(alpha: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """T_i = prod_{j<i} (1 - alpha_j) along ``dim`` (the sample axis): the light reaching sample i."""
    ones = torch.ones_like(alpha.narrow(dim, 0, 1))
    trans = torch.cumprod(torch.cat([ones, 1.0 - alpha + 1e-10], dim=dim), dim=dim)
    return trans.narrow(dim, 0, alpha.shape[dim])


def weights_from_alpha(alpha: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """w_i = alpha_i * prod_{j<i} (1 - alpha_j) along ``dim`` (the sample axis)."""
    return alpha * transmittance(alpha, dim)


def composite(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Sum_i w_i v_i over the sample axis 1: weights [N, S, ...], values [N, S, ..., C] -> [N, ..., C]."""
    return (weights.unsqueeze(-1) * values).sum(dim=1)


def expected_depth(weights: torch.Tensor, t: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Expected termination point given that the ray terminates: sum_i w_i t_i / sum_i w_i along ``dim``.

    weights, t: broadcastable, e.g. [N, S] or [N, S, T] with t [N, S, 1]. Dividing by the opacity keeps
    a partly transparent ray's depth on its surface (the undivided sum counts the transparent remainder
    as t = 0, i.e. at the near plane). Rays with no weight get 0.
    """
    return (weights * t).sum(dim) / weights.sum(dim).clamp_min(1e-10)


def ray_aabb_intersect(origins: torch.Tensor, dirs: torch.Tensor, aabb: torch.Tensor,
                       min_near: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Slab test. origins, dirs: [N, 3]; aabb: [2, 3] -> near [N], far [N], hit [N] bool.

    near is clamped to ``min_near`` (rays starting inside the box start there); rays that miss
    get near = far = min_near and hit = False.
    """
    safe = torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)
    t0 = (aabb[0] - origins) / safe
    t1 = (aabb[1] - origins) / safe
    near = torch.minimum(t0, t1).amax(-1).clamp_min(min_near)
    far = torch.maximum(t0, t1).amin(-1)
    hit = far > near
    near = torch.where(hit, near, torch.full_like(near, min_near))
    far = torch.where(hit, far, near)
    return near, far, hit

"""Training-time choices and regularizers that fight floaters and train/test mismatch (issue 14).

Pure functions of the model's outputs; :mod:`models.objective` adds them as loss terms (weights from the config).
"""
from __future__ import annotations

import torch


def distortion_loss(weights: torch.Tensor, t: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
    """Mip-NeRF 360 distortion loss, mean over rays. weights, t (sample positions), dt: [N, S].

    sum_ij w_i w_j |t_i - t_j| + 1/3 sum_i w_i^2 dt_i, the pairwise term in O(S) with prefix sums
    (t sorted along the ray). Small when each ray's weight sits in one short interval.
    """
    w_before = torch.cumsum(weights, dim=-1) - weights
    wt_before = torch.cumsum(weights * t, dim=-1) - weights * t
    pairwise = 2 * (weights * (t * w_before - wt_before)).sum(-1)
    return (pairwise + (weights.pow(2) * dt).sum(-1) / 3).mean()


def near_weight_loss(weights: torch.Tensor, t: torch.Tensor, t_near: float | torch.Tensor) -> torch.Tensor:
    """Mean over rays of the rendering weight at ray parameter t < t_near. weights, t: [N, S]; t_near: a
    number or per ray [N] (e.g. each camera's near bound: space nearer than it holds nothing)."""
    bound = t_near[:, None] if torch.is_tensor(t_near) else t_near
    return (weights * (t < bound)).sum(-1).mean()


def opacity_entropy_loss(acc: torch.Tensor) -> torch.Tensor:
    """Binary entropy of the ray opacity acc [N] (mean): pushes rays to fully opaque or empty."""
    a = acc.clamp(1e-4, 1 - 1e-4)
    return -(a * torch.log(a) + (1 - a) * torch.log(1 - a)).mean()


def opacity_loss(acc: torch.Tensor) -> torch.Tensor:
    """Mean of (1 - acc)^2 over rays, acc [N]: pushes every ray to end on a surface (forward-facing
    scenes, where no ray sees an empty background)."""
    return (1 - acc).pow(2).mean()


def background_step(step: int, fraction: float) -> bool:
    """Whether iteration ``step`` composites on a white background: ``fraction`` of the steps, evenly
    spread and deterministic in the step (so a resumed run repeats them)."""
    return fraction > 0 and int((step + 1) * fraction) > int(step * fraction)


def on_background(rgb: torch.Tensor, acc: torch.Tensor, value: float = 1.0) -> torch.Tensor:
    """rgb [N, 3] composited over a constant background: rgb + (1 - acc) * value (acc [N])."""
    return rgb + (1 - acc)[:, None] * value

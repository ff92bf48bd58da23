"""Loss functions: pure, shape-checked, masked. Each returns a scalar tensor."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from models.types import check_shape


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all elements; pred and target must have equal shapes."""
    if pred.shape != target.shape:
        raise ValueError(f"mse: shape mismatch {tuple(pred.shape)} vs {tuple(target.shape)}")
    return (pred - target).pow(2).mean()


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE over the rays where ``mask`` [N] is set; pred, target [N, ...]. Fixed shapes (no boolean
    gather, so no host sync): 0 when no ray is set."""
    if pred.shape != target.shape:
        raise ValueError(f"masked_mse: shape mismatch {tuple(pred.shape)} vs {tuple(target.shape)}")
    check_shape(mask, "N", N=pred.shape[0])
    per_ray = (pred - target).pow(2).flatten(1).sum(1)
    count = mask.sum() * (pred[0].numel() if pred.shape[0] else 1)
    return (per_ray * mask).sum() / count.clamp_min(1)


def variation_bce(ray_logit: torch.Tensor, label: torch.Tensor, max_pos_weight: float = 100.0) -> torch.Tensor:
    """Class-balanced BCE of the ray's max variation logit [N] against the dynamic label [N] bool."""
    check_shape(ray_logit, "N", N=label.shape[0])
    n_pos = label.sum().clamp_min(1).float()
    n_neg = (~label).sum().float()
    pos_weight = (n_neg / n_pos).clamp(1.0, max_pos_weight)
    return F.binary_cross_entropy_with_logits(ray_logit, label.float(), pos_weight=pos_weight)


def depth_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted MSE of expected depth. pred, target, weight: [N]; weight 0 = no supervision.

    Normalized by the number of supervised rays, so the scale does not depend on coverage.
    """
    n = pred.shape[0]
    check_shape(target, "N", N=n)
    check_shape(weight, "N", N=n)
    valid = weight > 0
    if not valid.any():
        return pred.sum() * 0.0
    return (weight[valid] * (pred[valid] - target[valid]).pow(2)).sum() / valid.sum()


def ds_kl_loss(weights: torch.Tensor, t: torch.Tensor, dt: torch.Tensor, target: torch.Tensor,
               sigma: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """DS-NeRF ray-termination loss: -sum_i log(w_i) exp(-(t_i - D)^2 / (2 sigma^2)) dt_i.

    weights, t, dt: [N, S]; target D, sigma, weight: [N] (weight 0 = no supervision).
    The Gaussian is normalized (1 / (sqrt(2 pi) sigma)) so the loss is a cross-entropy
    between N(D, sigma^2) and the termination distribution, comparable across sigmas.
    """
    n = weights.shape[0]
    for x in (target, sigma, weight):
        check_shape(x, "N", N=n)
    valid = weight > 0
    if not valid.any():
        return weights.sum() * 0.0
    w, tt, d = weights[valid], t[valid], dt[valid]
    D, s = target[valid, None], sigma[valid, None]
    gauss = torch.exp(-(tt - D).pow(2) / (2 * s.pow(2))) / (s * (2 * torch.pi) ** 0.5)
    per_ray = -(torch.log(w + 1e-5) * gauss * d).sum(-1)
    return (weight[valid] * per_ray).sum() / valid.sum()

"""Config wiring of the issue-14 training options: which rays train the dynamic branch, and the
floater regularizers of :mod:`models.regularizers` (each active only with a positive weight)."""
from __future__ import annotations

import argparse

import torch

from models.regularizers import distortion_loss, near_weight_loss, opacity_entropy_loss


def train_dynamic_rays(cfg: argparse.Namespace, model, label: torch.Tensor) -> dict:
    """Keyword arguments of the training forward that choose which rays the dynamic branch renders.

    ``train_dynamic_rays``: ``label`` -- the std label [N] (test time uses the variation field, so
    rays the field calls dynamic but the label does not are never trained dynamically); ``field`` --
    the variation field's prediction, as at test time (MixVoxels' point_wise training); ``union`` --
    label OR field.
    """
    if model.cfg.static_only or cfg.train_dynamic_rays == "field":
        return {"ray_dynamic": None}
    return {"ray_dynamic": label, "dynamic_union": cfg.train_dynamic_rays == "union"}


def regularizer_terms(cfg: argparse.Namespace, out, lr_scale: float) -> dict[str, torch.Tensor]:
    """Named floater-regularizer terms on the static branch (only those with a positive weight)."""
    terms = {}
    if cfg.distortion_weight > 0:
        terms["distortion"] = cfg.distortion_weight * lr_scale * distortion_loss(out.weights, out.t, out.dt)
    if cfg.near_weight > 0:
        terms["near"] = cfg.near_weight * near_weight_loss(out.weights, out.t, cfg.near_t)
    if cfg.opacity_entropy_weight > 0:
        terms["opacity_entropy"] = cfg.opacity_entropy_weight * opacity_entropy_loss(out.acc)
    return terms

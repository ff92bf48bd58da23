"""The MixVoxels training objective: named loss terms of one rendered batch (SPEC §4, §5).

Terms: static colour (every ray, against its temporal median or mean), TV of the static planes, dynamic colour
(rays the dynamic branch rendered), TV of the dynamic planes, the variation-field BCE against the
temporal-std label, and the depth term of the static branch (dense targets of the colour batch on
static rays, or a separately rendered batch of keypoint rays). The per-step scales (TV decay,
depth-weight decay) come from :mod:`engine.train.schedule`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from models import losses
from models.regularizers import distortion_loss, near_weight_loss, on_background, opacity_entropy_loss, opacity_loss
from models.types import RayBatch, RenderOutput

DEPTH_LOSSES = ("mse", "ds_kl")


@dataclass(frozen=True)
class ObjectiveWeights:
    """Constant weights of the loss terms (the config's TV, variation and depth-loss keys)."""

    tv_density: float
    tv_app: float
    tv_dynamic_factor: float
    variation: float
    depth_loss: str  # one of DEPTH_LOSSES
    distortion: float  # floater regularizers (models.regularizers); 0 = off
    near: float
    near_t: float  # ray-parameter bound of the near penalty; < 0: each ray's camera near bound (RayBatch.near)
    opacity_entropy: float
    opacity: float = 0.0  # (1 - acc)^2 prior: every ray of a forward-facing scene ends on a surface; < 0: auto
    white_bg_fraction: float = 0.0  # fraction of steps whose static colour is composited on white
    opacity_start: float = 0.0  # fraction of the iterations after which the opacity prior applies

    def for_scene(self, ndc: bool) -> ObjectiveWeights:
        """Resolve the automatic opacity weight (< 0): AUTO_OPACITY for forward-facing (NDC) scenes, where
        every ray ends on a surface, and 0 for bounded ones, whose rays may see an empty background."""
        if self.opacity >= 0:
            return self
        return replace(self, opacity=AUTO_OPACITY if ndc else 0.0)


AUTO_OPACITY = 0.1  # chosen on the quality family (BENCHMARKS.md, "The opacity prior")


@dataclass(frozen=True)
class StepScales:
    """Per-iteration factors: TV scale and depth weight (see :mod:`engine.train.schedule`)."""

    tv: float
    depth: float
    lr: float  # the learning-rate factor (the distortion loss follows it)
    white_bg: bool = False  # this step composites the static colour on white (models.regularizers.background_step)
    opacity: bool = True  # the opacity prior applies at this step (ObjectiveWeights.opacity_start)


def depth_loss(kind: str, out: RenderOutput, target: torch.Tensor, sigma: torch.Tensor,
               weight: torch.Tensor) -> torch.Tensor:
    """Depth loss of the static branch: targets, sigma, weight [N] in ray-parameter units."""
    if kind == "ds_kl":
        # A Gaussian narrower than the sample spacing is not resolved: floor sigma at the ray's mean interval.
        sigma = torch.maximum(sigma, out.dt.detach().float().mean(-1))
        return losses.ds_kl_loss(out.weights.float(), out.t, out.dt, target, sigma, weight)
    # The rendered depth (expected termination given that the ray terminates). Supervising sum(w t) instead
    # would count a ray's transparent remainder as t = 0 and push its surface behind the target.
    return losses.depth_mse(out.static_depth.float(), target, weight)


def loss_terms(model, batch: RayBatch, out: RenderOutput, label: torch.Tensor, w: ObjectiveWeights,
               scale: StepScales) -> dict[str, torch.Tensor]:
    """Named loss terms of a colour batch. label: [N] bool dynamic rays (temporal std above threshold)."""
    terms = {
        "static_rgb": losses.mse(static_rgb_for_loss(out, scale).float(), static_target(batch)),
        "tv_static": scale.tv * (w.tv_density * model.density.tv_loss() + w.tv_app * model.appearance.tv_loss()),
    }
    if not model.cfg.static_only:
        terms["dynamic_rgb"] = losses.masked_mse(out.rgb.float(), batch.rgb, out.dynamic_mask)
        terms["tv_dynamic"] = scale.tv * w.tv_dynamic_factor * (
            w.tv_density * model.dyn_density.tv_loss() + w.tv_app * model.dyn_appearance.tv_loss())
        terms["variation_bce"] = w.variation * losses.variation_bce(out.ray_logit.float(), label)
    terms.update(regularizer_terms(out, w, scale, batch.near if w.near_t < 0 else w.near_t))
    if batch.depth is not None:  # dense targets: static rays only
        weight = batch.depth_weight * (~label).float()
        terms["depth"] = scale.depth * depth_loss(w.depth_loss, out, batch.depth, batch.depth_sigma, weight)
    return terms


def regularizer_terms(out: RenderOutput, w: ObjectiveWeights, scale: StepScales,
                      near: float | torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Named floater-regularizer terms on the static branch (only those with a positive weight).
    near: the near penalty's bound, a ray parameter or per ray [N]."""
    terms = {}
    if w.distortion > 0:
        terms["distortion"] = w.distortion * scale.lr * distortion_loss(out.weights, out.t, out.dt)
    if w.near > 0:
        if near is None:
            raise ValueError("near_weight > 0 needs a bound: near_t >= 0 or rays with their camera's near bound")
        terms["near"] = w.near * near_weight_loss(out.weights, out.t, near)
    if w.opacity_entropy > 0:
        terms["opacity_entropy"] = w.opacity_entropy * opacity_entropy_loss(out.acc)
    if w.opacity > 0 and scale.opacity:
        terms["opacity"] = w.opacity * opacity_loss(out.acc)
    return terms


def static_target(batch: RayBatch) -> torch.Tensor:
    """The static branch's colour target [N, 3]: the batch's own (median or blurred targets, set by
    :meth:`dataLoader.dataset.VideoDataset.gather`) or else the frame mean."""
    return batch.rgb_static if batch.rgb_static is not None else batch.rgb.mean(1)


def static_rgb_for_loss(out: RenderOutput, scale: StepScales) -> torch.Tensor:
    """Static colour [N, 3] the colour loss compares: composited on white on the steps that say so, so a ray
    left transparent is penalised wherever the target is not white (MixVoxels' random white background)."""
    return on_background(out.static_rgb, out.acc) if scale.white_bg else out.static_rgb


def keypoint_terms(keypoints: RayBatch, out: RenderOutput, w: ObjectiveWeights,
                   scale: StepScales) -> dict[str, torch.Tensor]:
    """The depth term of a rendered batch of keypoint rays (sparse depth)."""
    loss = depth_loss(w.depth_loss, out, keypoints.depth, keypoints.depth_sigma, keypoints.depth_weight)
    return {"depth": scale.depth * loss}

"""MixVoxels: static VM fields + dynamic VM fields with all-frames time heads + variation field.

``forward(rays)`` takes no ground truth: the training loop may pass ``ray_dynamic`` (the
std label) to choose which rays the dynamic branch renders; at test time the variation
field decides. The static branch is rendered for every ray; dynamic rays composite, per
frame, dynamic densities/colours at dynamic points with the (detached) static ones elsewhere.
At dynamic points ``dynamic_compose`` chooses what frame t sees: ``replace`` (MixVoxels, the
default) the dynamic density alone, ``gate`` the dynamic density plus a learned per-frame share
g_t in (0, 1) of the detached static density, so frames in which nothing passes can show the
static (depth-supervised) surface instead of re-learning it frame by frame.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models import objective
from models import volume_rendering as vr
from models.alpha_mask import AlphaMask, dilate_and_threshold, occupied_box
from models.heads import StaticColorHead, TimeColorHead, TimeDensityHead
from models.objective import ObjectiveWeights, StepScales
from models.tensor_vm import VMField
from models.types import RayBatch, RenderOutput


def put(buf: torch.Tensor, mask: torch.Tensor, values: torch.Tensor) -> None:
    """buf[mask] = values in buf's dtype: under autocast the heads return bfloat16/float16 while the
    buffers that feed compositing stay float32."""
    buf[mask] = values.to(buf.dtype)


@dataclass(frozen=True)
class ModelConfig:
    """Every hyper-parameter needed to rebuild a model (stored in checkpoints)."""

    n_frames: int = 1
    static_only: bool = False
    ndc: bool = True
    near_far: tuple[float, float] = (0.0, 1.0)
    n_lamb_sigma: tuple[int, ...] = (16, 4, 4)
    n_lamb_sh: tuple[int, ...] = (48, 12, 12)
    n_lamb_sigma_dynamic: tuple[int, ...] = (16, 4, 4)
    n_lamb_sh_dynamic: tuple[int, ...] = (48, 12, 12)
    n_lamb_variation: tuple[int, ...] = (16, 4, 4)
    app_dim: int = 27
    data_dim_density: int = 27
    data_dim_color: int = 27
    static_featureC: int = 128
    featureC: int = 256
    featureD: int = 256
    voxel_init_static: float = 0.1
    voxel_init_dynamic: float = 0.1
    fea2denseAct: str = "relu"
    density_shift: float = -10.0
    distance_scale: float = 25.0
    step_ratio: float = 2.0
    n_samples_max: int = 1_000_000
    alpha_mask_thre: float = 1e-4
    rm_weight_mask_thre: float = 1e-4
    dynamic_threshold: float = 0.5
    dynamic_granularity: str = "point_wise"
    point_wise_dynamic_threshold: float = 0.05
    dynamic_pool_kernel_size: int = 5
    zero_dynamic_sigma: bool = False
    zero_dynamic_sigma_thresh: float = 1e-5
    sigma_static_thresh: float = 0.1
    dynamic_compose: str = "replace"
    alpha_mask_distance_scale: bool = True
    view_dependent: bool = True
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> ModelConfig:
        known = {k: v for k, v in d.items() if k in ModelConfig.__dataclass_fields__}
        for key in ("near_far", "n_lamb_sigma", "n_lamb_sh", "n_lamb_sigma_dynamic", "n_lamb_sh_dynamic",
                    "n_lamb_variation"):
            if key in known:
                known[key] = tuple(known[key])
        return ModelConfig(**known)


class MixVoxels(nn.Module):
    """aabb: [2, 3] ray-space box; resolution: [Rx, Ry, Rz] current grid size."""

    def __init__(self, cfg: ModelConfig, aabb, resolution: list[int]):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3).clone())
        res = [int(r) for r in resolution]
        self.density = VMField(res, list(cfg.n_lamb_sigma), None, cfg.voxel_init_static)
        self.appearance = VMField(res, list(cfg.n_lamb_sh), cfg.app_dim, cfg.voxel_init_static)
        self.color_head = StaticColorHead(cfg.app_dim, cfg.static_featureC)
        if not cfg.static_only:
            t = cfg.n_frames
            self.dyn_density = VMField(res, list(cfg.n_lamb_sigma_dynamic), cfg.data_dim_density,
                                       cfg.voxel_init_dynamic)
            self.dyn_appearance = VMField(res, list(cfg.n_lamb_sh_dynamic), cfg.data_dim_color,
                                          cfg.voxel_init_dynamic)
            self.dyn_density_head = TimeDensityHead(cfg.data_dim_density, cfg.featureD, t)
            self.dyn_color_head = TimeColorHead(cfg.data_dim_color, cfg.featureC, t)
            self.variation = VMField(res, list(cfg.n_lamb_variation), None, 0.1)
            if cfg.dynamic_compose == "gate":  # [P, F] dynamic density features -> [P, T] gate logits
                self.dyn_gate = nn.Linear(cfg.data_dim_density, t)
                nn.init.zeros_(self.dyn_gate.weight)
                nn.init.zeros_(self.dyn_gate.bias)  # every frame starts with half the static density
        self.alpha_mask: AlphaMask | None = None

    # ----------------------------------------------------------------- structure
    def fields(self) -> list[VMField]:
        names = ["density", "appearance"] + ([] if self.cfg.static_only else
                                              ["dyn_density", "dyn_appearance", "variation"])
        return [getattr(self, n) for n in names]

    @property
    def resolution(self) -> list[int]:
        return self.density.resolution

    @property
    def n_samples(self) -> int:
        """Samples per ray: |resolution| / step_ratio, capped by n_samples_max."""
        norm = float(torch.tensor(self.resolution, dtype=torch.float32).norm())
        return max(8, min(self.cfg.n_samples_max, int(norm / self.cfg.step_ratio)))

    def param_groups(self, lr_grid: float, lr_net: float, lr_dyn_grid: float, lr_dyn_net: float) -> list[dict]:
        """Named optimizer groups holding exactly the live parameters."""
        groups = [
            {"name": "static_grids", "params": self.density.grid_parameters() + self.appearance.grid_parameters(),
             "lr": lr_grid},
            {"name": "static_nets", "params": self.appearance.net_parameters() + list(self.color_head.parameters()),
             "lr": lr_net},
        ]
        if not self.cfg.static_only:
            groups += [
                {"name": "dynamic_grids", "params": self.dyn_density.grid_parameters()
                 + self.dyn_appearance.grid_parameters(), "lr": lr_dyn_grid},
                {"name": "dynamic_nets", "params": self.dyn_density.net_parameters()
                 + self.dyn_appearance.net_parameters() + list(self.dyn_density_head.parameters())
                 + list(self.dyn_color_head.parameters())
                 + (list(self.dyn_gate.parameters()) if self.cfg.dynamic_compose == "gate" else []),
                 "lr": lr_dyn_net},
                {"name": "variation_grids", "params": self.variation.grid_parameters(), "lr": lr_grid},
            ]
        return groups

    # ----------------------------------------------------------------- sampling
    def normalize_coords(self, xyz: torch.Tensor) -> torch.Tensor:
        """[..., 3] ray-space points -> [-1, 1] over the aabb."""
        return (xyz - self.aabb[0]) / (self.aabb[1] - self.aabb[0]) * 2 - 1

    def density_act(self, raw: torch.Tensor) -> torch.Tensor:
        if self.cfg.fea2denseAct == "softplus":
            return F.softplus(raw + self.cfg.density_shift)
        return F.relu(raw)

    def ray_bounds(self, rays: RayBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """near, far: [N] ray-parameter range to sample."""
        n = len(rays)
        if self.cfg.ndc:
            near, far = self.cfg.near_far
            return rays.origins.new_full((n,), near), rays.origins.new_full((n,), far)
        near, far, _ = vr.ray_aabb_intersect(rays.origins, rays.directions, self.aabb, self.cfg.near_far[0])
        return near, far

    def sample_points(self, rays: RayBatch, jitter: bool, generator=None):
        """-> t [N,S], dt [N,S] (ray-parameter units), xyz [N,S,3], valid [N,S] bool."""
        near, far = self.ray_bounds(rays)
        t = vr.stratified_samples(len(rays), self.n_samples, near, far, jitter, rays.origins.device, generator)
        dt = vr.interval_lengths(t, near, far)
        xyz = rays.origins[:, None] + t[..., None] * rays.directions[:, None]
        valid = ((xyz >= self.aabb[0]) & (xyz <= self.aabb[1])).all(-1)
        if self.alpha_mask is not None:  # every point is looked up: fixed shapes, no host sync
            valid = valid & self.alpha_mask.query(xyz.reshape(-1, 3)).view(valid.shape)
        return t, dt, xyz, valid

    # ----------------------------------------------------------------- forward
    def forward(self, rays: RayBatch, jitter: bool = False, ray_dynamic: torch.Tensor | None = None,
                generator: torch.Generator | None = None, dynamic_union: bool = False) -> RenderOutput:
        """Render N rays for all T frames. ray_dynamic: optional [N] bool override of the variation field
        (with ``dynamic_union`` it is added to the field's choice instead: label OR field)."""
        t, dt, xyz, valid = self.sample_points(rays, jitter, generator)
        n, s = t.shape
        dist = dt * rays.directions.norm(dim=-1, keepdim=True) * self.cfg.distance_scale
        viewdir = F.normalize(rays.directions, dim=-1)
        if not self.cfg.view_dependent:  # the heads keep their input width: checkpoints stay loadable
            viewdir = torch.zeros_like(viewdir)
        xyz_n = self.normalize_coords(xyz)

        sigma = xyz.new_zeros(n, s)
        put(sigma, valid, self.density_act(self.density(xyz_n[valid])))
        weights = vr.weights_from_alpha(vr.alpha_from_sigma(sigma, dist))
        acc = weights.sum(-1)
        static_depth = vr.expected_depth(weights, t)

        logits = self.variation_logits(xyz_n, valid)
        ray_logit = logits.max(-1).values
        if self.cfg.static_only:
            dyn = torch.zeros(n, dtype=torch.bool, device=xyz.device)
        elif ray_dynamic is None:
            dyn = torch.sigmoid(ray_logit) > self.cfg.dynamic_threshold
        else:
            dyn = ray_dynamic.bool() & valid.any(-1)
            if dynamic_union:
                dyn = dyn | (torch.sigmoid(ray_logit.detach()) > self.cfg.dynamic_threshold)

        pt_dyn, w_dyn, static_share = self._dynamic_density(xyz_n, valid, logits, sigma, dist, dyn)
        need_static = weights > self.cfg.rm_weight_mask_thre
        if pt_dyn is not None:
            need_static[dyn] |= valid[dyn] & ~pt_dyn & (w_dyn.amax(-1) > self.cfg.rm_weight_mask_thre)
        rgb_pts = xyz.new_zeros(n, s, 3)
        feat = self.appearance(xyz_n[need_static])
        put(rgb_pts, need_static, self.color_head(feat, viewdir[:, None].expand(n, s, 3)[need_static]))
        static_rgb = vr.composite(weights, rgb_pts)

        if self.cfg.static_only:
            rgb, depth = static_rgb[:, None], static_depth[:, None]
        else:
            rgb = static_rgb.detach()[:, None].expand(n, self.cfg.n_frames, 3).clone()
            depth = static_depth.detach()[:, None].expand(n, self.cfg.n_frames).clone()
        if pt_dyn is not None:
            put(rgb, dyn, self._dynamic_color(xyz_n[dyn], viewdir[dyn], pt_dyn, w_dyn, rgb_pts[dyn].detach(),
                                              static_share))
            depth[dyn] = vr.expected_depth(w_dyn, t[dyn][..., None])
        return RenderOutput(rgb=rgb, depth=depth, static_rgb=static_rgb, static_depth=static_depth, acc=acc,
                            dynamic_mask=dyn, ray_logit=ray_logit, weights=weights, t=t, dt=dt)

    def variation_logits(self, xyz_n: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """[N, S] variation-field logits at normalized points xyz_n [N, S, 3]; -30 where invalid or static-only."""
        logits = xyz_n.new_full(valid.shape, -30.0)
        if not self.cfg.static_only:
            put(logits, valid, self.variation(xyz_n[valid]))
        return logits

    def ray_variation_logit(self, rays: RayBatch, jitter: bool = False) -> torch.Tensor:
        """[N] max variation logit along each ray (the variation field alone: no colour, no density)."""
        _, _, xyz, valid = self.sample_points(rays, jitter)
        return self.variation_logits(self.normalize_coords(xyz), valid).max(-1).values

    # ----------------------------------------------------------------- objective
    def loss_terms(self, batch: RayBatch, out: RenderOutput, label: torch.Tensor, weights: ObjectiveWeights,
                   scales: StepScales) -> dict[str, torch.Tensor]:
        """Named loss terms of a rendered colour batch (see :mod:`models.objective`)."""
        return objective.loss_terms(self, batch, out, label, weights, scales)

    def keypoint_terms(self, keypoints: RayBatch, out: RenderOutput, weights: ObjectiveWeights,
                       scales: StepScales) -> dict[str, torch.Tensor]:
        """The depth term of a rendered batch of keypoint rays."""
        return objective.keypoint_terms(keypoints, out, weights, scales)

    def point_dynamic_mask(self, logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """[M, S] logits of dynamic rays -> [M, S] bool dynamic points (dilated along the ray)."""
        if self.cfg.dynamic_granularity == "ray_wise" or logits.shape[0] == 0:
            return valid.clone()
        k = self.cfg.dynamic_pool_kernel_size
        pooled = F.max_pool1d(logits[:, None], kernel_size=k, stride=1, padding=k // 2)[:, 0]
        return valid & (torch.sigmoid(pooled) > self.cfg.point_wise_dynamic_threshold)

    def _dynamic_density(self, xyz_n, valid, logits, sigma, dist, dyn):
        """Per-frame densities of dynamic rays -> (pt_dyn [M,S], weights [M,S,T], static share [P,T] of the
        density at the P dynamic points, or None with ``dynamic_compose = replace``)."""
        if self.cfg.static_only:
            return None, None, None
        pt_dyn = self.point_dynamic_mask(logits[dyn], valid[dyn])
        sig = sigma[dyn].detach()[..., None].expand(-1, -1, self.cfg.n_frames).clone()
        feat = self.dyn_density(xyz_n[dyn][pt_dyn])
        sig_d = self.density_act(self.dyn_density_head(feat))
        if self.cfg.zero_dynamic_sigma:
            sig_d = self._zero_still_dynamic(sig_d, sigma[dyn][pt_dyn], dist[dyn][pt_dyn])
        share = None
        if self.cfg.dynamic_compose == "gate":
            sig_s = torch.sigmoid(self.dyn_gate(feat)) * sigma[dyn][pt_dyn].detach()[:, None]
            sig_d = sig_d + sig_s
            share = sig_s / sig_d.clamp_min(1e-10)
        put(sig, pt_dyn, sig_d)
        alpha = vr.alpha_from_sigma(sig, dist[dyn][..., None])
        return pt_dyn, vr.weights_from_alpha(alpha, dim=1), share

    def _zero_still_dynamic(self, sig_d, sigma_s, dist):
        """MixVoxels' ``zero_dynamic_sigma``: dynamic density [P, T] -> 0 where the static density [P] is
        ~0 and the per-frame alpha barely changes over time (empty space the dynamic branch must not fill)."""
        alpha = vr.alpha_from_sigma(sig_d, dist[:, None])
        still = (alpha.amax(-1) - alpha.amin(-1)) < self.cfg.sigma_static_thresh
        zero = still & (sigma_s < self.cfg.zero_dynamic_sigma_thresh)
        return torch.where(zero[:, None], torch.zeros_like(sig_d), sig_d)

    def _dynamic_color(self, xyz_n, viewdir, pt_dyn, w_dyn, static_rgb_pts, static_share=None):
        """Dynamic rays' per-frame colour [M, T, 3] from dynamic points + detached static colours.
        static_share: optional [P, T] static share of the density at the P points of pt_dyn (``gate``)."""
        m, s = pt_dyn.shape
        rgb = static_rgb_pts[:, :, None].expand(m, s, self.cfg.n_frames, 3).clone()
        need = pt_dyn & (w_dyn.amax(-1) > self.cfg.rm_weight_mask_thre)
        feat = self.dyn_appearance(xyz_n[need])
        c_d = self.dyn_color_head(feat, viewdir[:, None].expand(m, s, 3)[need])
        if static_share is not None:
            share = static_share[need[pt_dyn]][..., None]  # need is a subset of pt_dyn
            c_d = share * rgb[need] + (1 - share) * c_d
        put(rgb, need, c_d)
        return (w_dyn[..., None] * rgb).sum(1)

    # ----------------------------------------------------------------- grid updates
    @torch.no_grad()
    def upsample(self, resolution: list[int]) -> None:
        for f in self.fields():
            f.upsample(resolution)

    @torch.no_grad()
    def occupancy_grid(self, resolution: list[int], chunk: int = 2 ** 18) -> torch.Tensor:
        """Dense occupancy over the aabb at [Rx, Ry, Rz] -> [Rz, Ry, Rx] bool.

        A voxel is occupied when its static alpha exceeds ``alpha_mask_thre`` or the variation field
        calls it dynamic (so space that only moving objects visit is never pruned).
        """
        rx, ry, rz = resolution
        axes = [torch.linspace(0, 1, r, device=self.aabb.device) for r in (rz, ry, rx)]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).flip(-1)
        pts = (self.aabb[0] + grid * (self.aabb[1] - self.aabb[0])).reshape(-1, 3)
        step = float(((self.aabb[1] - self.aabb[0]) / (torch.tensor(resolution, device=pts.device) - 1)).mean())
        alpha = torch.empty(pts.shape[0], device=pts.device)
        for i in range(0, pts.shape[0], chunk):
            p = self.normalize_coords(pts[i:i + chunk])
            scale = self.cfg.distance_scale if self.cfg.alpha_mask_distance_scale else 1.0
            a = 1 - torch.exp(-self.density_act(self.density(p)) * step * scale)
            if not self.cfg.static_only:  # keep space the variation field calls dynamic
                keep = torch.sigmoid(self.variation(p)) > self.cfg.dynamic_threshold
                a = torch.where(keep, torch.ones_like(a), a)
            alpha[i:i + chunk] = a
        return dilate_and_threshold(alpha.view(rz, ry, rx), self.cfg.alpha_mask_thre)

    @torch.no_grad()
    def update_alpha_mask(self, resolution: list[int], seen: torch.Tensor | None = None) -> torch.Tensor | None:
        """Rebuild the alpha mask at ``resolution``; returns the occupied box [2, 3] (or None if empty).

        seen: optional [Rz, Ry, Rx] bool grid of voxels the training cameras observe (bounded scenes,
        :func:`models.visibility.seen_grid`); voxels outside it are dropped from the mask."""
        occ = self.occupancy_grid(resolution)
        if seen is not None:
            occ = occ & seen.to(occ.device)
        self.alpha_mask = AlphaMask(self.aabb.clone(), occ)
        return occupied_box(occ, self.aabb)

    @torch.no_grad()
    def shrink(self, box: torch.Tensor) -> None:
        """Crop every field to the voxels covering ``box`` [2, 3]; aabb snaps to kept voxel positions."""
        res = torch.tensor(self.resolution, dtype=torch.float32, device=self.aabb.device)
        units = (self.aabb[1] - self.aabb[0]) / (res - 1)
        eps = 1e-3  # box corners sit on voxel positions; absorb float round-off before floor/ceil
        lo = torch.floor((box[0] - self.aabb[0]) / units + eps).clamp_min(0).long()
        hi = (torch.ceil((box[1] - self.aabb[0]) / units - eps).long() + 1)
        hi = torch.minimum(hi, res.long())
        lo = torch.minimum(lo, hi - 2)
        for f in self.fields():
            f.crop(lo.tolist(), hi.tolist())
        new = torch.stack([self.aabb[0] + lo * units, self.aabb[0] + (hi - 1) * units])
        self.aabb.copy_(new)

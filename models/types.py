"""Shared dataclasses and the shape vocabulary.

Shape letters used in docstrings across the toolkit:
N rays, S samples per ray, T frames, C channels/features, P points,
R grid resolution, H/W pixels, K cameras.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch


def check_shape(x: torch.Tensor, spec: str, **dims: int) -> None:
    """Assert ``x`` has the shape ``spec`` (e.g. ``"N T 3"``); letters bind to ``dims`` when given.

    Integers in the spec must match exactly; letters bound in ``dims`` must match their
    value; other letters match anything. Catches ``[B] - [B, 1]`` broadcasting bugs.
    """
    parts = spec.split()
    if x.ndim != len(parts):
        raise ValueError(f"expected shape [{spec}], got {tuple(x.shape)}")
    for size, part in zip(x.shape, parts):
        want = int(part) if part.isdigit() else dims.get(part)
        if want is not None and size != want:
            raise ValueError(f"expected shape [{spec}] with {dims}, got {tuple(x.shape)}")


@dataclass
class RayBatch:
    """Rays in the model's ray space (NDC for forward-facing scenes) plus optional supervision.

    origins, directions: [N, 3] float32 (directions unnormalized).
    rgb: [N, T, 3] float in [0, 1]; std: [N] temporal std label source;
    depth: [N] target ray parameter; depth_weight: [N] (0 = no depth).
    depth_sigma: [N] target std-dev in ray-parameter units (for ``ds_kl``).
    near: [N] ray parameter of the ray's camera near bound (``poses_bounds.npy``): the scene lies beyond it.
    rgb_static: [N, 3] the static branch's colour target when it is not ``rgb.mean(1)`` (median or blurred
        targets).
    """

    origins: torch.Tensor
    directions: torch.Tensor
    rgb: torch.Tensor | None = None
    std: torch.Tensor | None = None
    depth: torch.Tensor | None = None
    depth_weight: torch.Tensor | None = None
    depth_sigma: torch.Tensor | None = None
    near: torch.Tensor | None = None
    rgb_static: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.origins.shape[0]

    def pin_memory(self) -> RayBatch:
        """A copy in page-locked host memory (CUDA only), so that ``to(device)`` copies asynchronously."""
        return self._map(lambda t: t.pin_memory())

    def to(self, device) -> RayBatch:
        return self._map(lambda t: t.to(device, non_blocking=True))

    def _map(self, fn) -> RayBatch:
        """A batch with ``fn`` applied to every tensor field (None stays None)."""
        return RayBatch(**{f.name: None if (v := getattr(self, f.name)) is None else fn(v) for f in fields(self)})


@dataclass
class RenderOutput:
    """What the model renders for N rays, T frames and S samples per ray.

    rgb: [N, T, 3] composite (dynamic rays from the dynamic branch, others static).
    depth: [N, T] expected ray parameter per frame, given the ray terminates (divided by its opacity).
    static_rgb: [N, 3], static_depth: [N] (the same for the static branch), acc: [N] static opacity.
    dynamic_mask: [N] bool, rays rendered by the dynamic branch.
    ray_logit: [N] max variation-field logit over the ray's valid samples (-inf-free:
    rays with no valid sample get a large negative value).
    weights, t, dt: [N, S] static weights, sample positions and interval lengths.
    """

    rgb: torch.Tensor
    depth: torch.Tensor
    static_rgb: torch.Tensor
    static_depth: torch.Tensor
    acc: torch.Tensor
    dynamic_mask: torch.Tensor
    ray_logit: torch.Tensor
    weights: torch.Tensor
    t: torch.Tensor
    dt: torch.Tensor
    extras: dict = field(default_factory=dict)

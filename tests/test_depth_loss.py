"""Depth losses reach the static grids (the published depth loss never did) and move depth."""
from __future__ import annotations

import pytest
import torch

from models import losses
from models.mixvoxels import MixVoxels, ModelConfig
from models.types import RayBatch


def _model(seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(n_frames=3, n_lamb_sigma=(4, 2, 2), n_lamb_sh=(4, 2, 2), n_lamb_sigma_dynamic=(2, 2, 2),
                      n_lamb_sh_dynamic=(2, 2, 2), n_lamb_variation=(2, 2, 2), app_dim=6, data_dim_density=4,
                      data_dim_color=4, static_featureC=8, featureC=8, featureD=8, step_ratio=1.0)
    return MixVoxels(cfg, [[-1, -1, -1], [1, 1, 1]], [12, 12, 12])


def _rays(n=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    origins = torch.cat([torch.rand(n, 2, generator=g) * 1.2 - 0.6, -torch.ones(n, 1)], -1)
    dirs = torch.cat([torch.rand(n, 2, generator=g) * 0.4 - 0.2, 2 * torch.ones(n, 1)], -1)
    return RayBatch(origins, dirs)


def _depth_loss(kind, out, target):
    n = target.shape[0]
    weight = torch.ones(n)
    if kind == "mse":
        return losses.depth_mse(out.static_depth, target, weight)
    return losses.ds_kl_loss(out.weights, out.t, out.dt, target, torch.full((n,), 0.05), weight)


@pytest.mark.parametrize("kind", ["mse", "ds_kl"])
def test_depth_loss_alone_reaches_every_static_density_parameter(kind):
    model, rays = _model(), _rays()
    out = model(rays, ray_dynamic=torch.zeros(len(rays), dtype=torch.bool))
    loss = _depth_loss(kind, out, torch.full((len(rays),), 0.6))
    loss.backward()
    for p in model.density.grid_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    for p in model.dyn_density.grid_parameters():  # the depth term supervises the static branch only
        assert p.grad is None or p.grad.abs().sum() == 0


@pytest.mark.parametrize("kind", ["mse", "ds_kl"])
def test_depth_loss_steps_move_rendered_depth_toward_target(kind):
    model, rays = _model(), _rays()
    target = torch.full((len(rays),), 0.6)
    static = torch.zeros(len(rays), dtype=torch.bool)
    opt = torch.optim.Adam(model.density.grid_parameters(), lr=0.02)
    before = (model(rays, ray_dynamic=static).static_depth - target).abs().mean().item()
    for _ in range(15):
        opt.zero_grad()
        _depth_loss(kind, model(rays, ray_dynamic=static), target).backward()
        opt.step()
    after = (model(rays, ray_dynamic=static).static_depth - target).abs().mean().item()
    assert after < 0.7 * before


def test_depth_mse_is_per_ray_not_broadcast():
    pred = torch.tensor([1.0, 2.0, 3.0])
    target = torch.tensor([1.0, 1.0, 1.0])
    weight = torch.tensor([1.0, 2.0, 0.0])
    # (1*0 + 2*1) / 2 supervised rays; the third ray has no depth
    assert losses.depth_mse(pred, target, weight).item() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        losses.depth_mse(pred, target[:, None], weight)


def test_ds_kl_is_smallest_when_weights_peak_at_target():
    t = torch.linspace(0.05, 0.95, 10)[None]
    dt = torch.full_like(t, 0.1)
    target, sigma, weight = torch.tensor([0.45]), torch.tensor([0.05]), torch.ones(1)
    at = torch.zeros_like(t)
    at[0, 4] = 0.999
    off = torch.zeros_like(t)
    off[0, 8] = 0.999
    assert losses.ds_kl_loss(at, t, dt, target, sigma, weight) < losses.ds_kl_loss(off, t, dt, target, sigma, weight)


def test_depth_losses_gradcheck_float64():
    w = torch.rand(3, 6, dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0.1, 0.9, 6, dtype=torch.float64).expand(3, 6)
    dt = torch.full((3, 6), 0.15, dtype=torch.float64)
    target = torch.tensor([0.3, 0.5, 0.7], dtype=torch.float64)
    sigma = torch.full((3,), 0.1, dtype=torch.float64)
    weight = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: losses.ds_kl_loss(x, t, dt, target, sigma, weight), (w,))
    d = torch.rand(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: losses.depth_mse(x, target, weight), (d,))

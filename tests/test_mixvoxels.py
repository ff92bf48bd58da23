"""MixVoxels forward: output shapes, static/dynamic compositing against dense references, alpha mask + shrink."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models import volume_rendering as vr
from models.mixvoxels import MixVoxels, ModelConfig
from models.types import RayBatch

AABB = [[-1.5, -1.67, -1.0], [1.5, 1.67, 1.0]]
T = 3


def tiny_model(static_only: bool = False, resolution=(10, 11, 8), seed: int = 0, **kw) -> MixVoxels:
    torch.manual_seed(seed)
    cfg = ModelConfig(n_frames=T, static_only=static_only, n_lamb_sigma=(2, 1, 1), n_lamb_sh=(4, 2, 2),
                      n_lamb_sigma_dynamic=(2, 1, 1), n_lamb_sh_dynamic=(4, 2, 2), n_lamb_variation=(2, 1, 1),
                      app_dim=6, data_dim_density=6, data_dim_color=6, static_featureC=8, featureC=8,
                      featureD=8, **{"n_samples_max": 24, **kw})
    model = MixVoxels(cfg, AABB, list(resolution))
    with torch.no_grad():  # visible, non-trivial static density
        for p in model.density.grid_parameters():
            p.mul_(8.0)
    return model


def ndc_rays(n: int, seed: int = 1) -> RayBatch:
    """NDC rays starting on the near plane z = -1 with direction z = 2, staying inside the aabb in x, y."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 1.6 - 0.8
    dxy = torch.rand(n, 2, generator=g) * 0.6 - 0.3
    return RayBatch(torch.cat([xy, -torch.ones(n, 1)], 1), torch.cat([dxy, 2 * torch.ones(n, 1)], 1))


def test_output_shapes_of_every_field():
    model = tiny_model()
    rays = ndc_rays(13)
    s = model.n_samples
    assert s == 8  # |(10, 11, 8)| / step_ratio 2 = 8.5 -> 8 (under the cap of 24, at the floor of 8)
    for jitter in (False, True):
        out = model(rays, jitter=jitter, ray_dynamic=torch.arange(13) % 2 == 0)
        assert out.rgb.shape == (13, T, 3) and out.depth.shape == (13, T)
        assert out.static_rgb.shape == (13, 3) and out.static_depth.shape == (13,)
        assert out.acc.shape == (13,) and out.ray_logit.shape == (13,)
        assert out.dynamic_mask.shape == (13,) and out.dynamic_mask.dtype == torch.bool
        assert out.weights.shape == out.t.shape == out.dt.shape == (13, s)
        assert out.extras == {}
        assert ((out.rgb >= 0) & (out.rgb <= 1)).all() and ((out.acc >= 0) & (out.acc <= 1 + 1e-6)).all()
        assert out.dynamic_mask.tolist() == (torch.arange(13) % 2 == 0).tolist()


def test_static_only_model_returns_one_frame():
    model = tiny_model(static_only=True)
    assert len(model.fields()) == 2 and not hasattr(model, "dyn_density")
    assert [g["name"] for g in model.param_groups(1, 1, 1, 1)] == ["static_grids", "static_nets"]
    out = model(ndc_rays(9))
    assert out.rgb.shape == (9, 1, 3) and out.depth.shape == (9, 1)
    torch.testing.assert_close(out.rgb[:, 0], out.static_rgb)
    torch.testing.assert_close(out.depth[:, 0], out.static_depth)
    assert not out.dynamic_mask.any()


def dense_static_reference(model: MixVoxels, rays: RayBatch, out):
    """Dense (unmasked) static render at the model's own sample positions."""
    xyz = rays.origins[:, None] + out.t[..., None] * rays.directions[:, None]
    n, s = out.t.shape
    xyz_n = model.normalize_coords(xyz).reshape(-1, 3)
    sigma = F.relu(model.density(xyz_n)).reshape(n, s)
    dist = out.dt * rays.directions.norm(dim=-1, keepdim=True) * model.cfg.distance_scale
    viewdir = F.normalize(rays.directions, dim=-1)[:, None].expand(n, s, 3).reshape(-1, 3)
    rgb = model.color_head(model.appearance(xyz_n), viewdir).reshape(n, s, 3)
    return sigma, dist, rgb


def test_static_branch_equals_dense_composite():
    model = tiny_model(rm_weight_mask_thre=0.0)
    rays = ndc_rays(32)
    with torch.no_grad():
        out = model(rays)
        sigma, dist, rgb = dense_static_reference(model, rays, out)
    w = vr.weights_from_alpha(vr.alpha_from_sigma(sigma, dist))
    assert 0.2 < out.acc.mean() < 0.999  # a non-trivial scene
    torch.testing.assert_close(out.weights, w)
    torch.testing.assert_close(out.static_rgb, vr.composite(w, rgb))
    torch.testing.assert_close(out.static_depth, (w * out.t).sum(-1) / w.sum(-1))  # given termination
    torch.testing.assert_close(out.acc, w.sum(-1))


def test_no_dynamic_rays_composite_equals_static_render():
    model = tiny_model()
    rays = ndc_rays(20)
    out = model(rays, ray_dynamic=torch.zeros(20, dtype=torch.bool))
    assert not out.dynamic_mask.any()
    torch.testing.assert_close(out.rgb, out.static_rgb[:, None].expand(20, T, 3))
    torch.testing.assert_close(out.depth, out.static_depth[:, None].expand(20, T))


def dynamic_in_region_model(**kw) -> MixVoxels:
    """Variation logit = 20 (x_n - 0.3) (dynamic for normalized x > ~0.3); zero dynamic density everywhere."""
    model = tiny_model(rm_weight_mask_thre=0.0, **kw)
    with torch.no_grad():
        for p in model.variation.grid_parameters():
            p.zero_()
        rx = model.resolution[0]
        model.variation.planes[0][0, 0] = 20 * (torch.linspace(-1, 1, rx) - 0.3)[None, :]  # XY plane, x along width
        model.variation.lines[0][0, 0] = 1.0
        last = model.dyn_density_head.net[-1]
        last.weight.zero_()
        last.bias.zero_()
    return model


def dynamic_points_of_region_model(model: MixVoxels, rays: RayBatch, out) -> torch.Tensor:
    """[N, S] points the variation field of :func:`dynamic_in_region_model` calls dynamic."""
    xyz = rays.origins[:, None] + out.t[..., None] * rays.directions[:, None]
    logit = 20 * (model.normalize_coords(xyz)[..., 0] - 0.3)
    k = model.cfg.dynamic_pool_kernel_size
    pooled = F.max_pool1d(logit[:, None], k, stride=1, padding=k // 2)[:, 0]
    return torch.sigmoid(pooled) > model.cfg.point_wise_dynamic_threshold


def test_dynamic_branch_with_zero_dynamic_density_matches_dense_reference():
    model = dynamic_in_region_model(dynamic_compose="replace")
    rays = ndc_rays(64, seed=4)
    out = model(rays, ray_dynamic=torch.ones(64, dtype=torch.bool))
    assert out.dynamic_mask.all()
    with torch.no_grad():
        sigma, dist, rgb = dense_static_reference(model, rays, out)
        pt_dyn = dynamic_points_of_region_model(model, rays, out)
    has_dyn = pt_dyn.any(-1)
    assert 5 < has_dyn.sum() < 59  # both kinds of rays are present
    # rays without a dynamic point: the dynamic branch reproduces the static render in every frame
    torch.testing.assert_close(out.rgb[~has_dyn], out.static_rgb[~has_dyn, None].expand(-1, T, 3).detach())
    torch.testing.assert_close(out.depth[~has_dyn], out.static_depth[~has_dyn, None].expand(-1, T).detach())
    # rays with dynamic points: static density and colour elsewhere, zero density at dynamic points
    w = vr.weights_from_alpha(vr.alpha_from_sigma(torch.where(pt_dyn, 0.0, sigma), dist))
    ref_rgb = vr.composite(w, rgb)
    torch.testing.assert_close(out.rgb.detach(), ref_rgb[:, None].expand(-1, T, 3), atol=1e-5, rtol=1e-5)
    ref_depth = (w * out.t).sum(-1) / w.sum(-1).clamp_min(1e-10)  # given termination; 0 for empty rays
    torch.testing.assert_close(out.depth.detach(), ref_depth[:, None].expand(-1, T), atol=1e-5, rtol=1e-5)
    assert (out.rgb[has_dyn].detach() - out.static_rgb[has_dyn, None].detach()).abs().max() > 1e-3


def test_gated_compose_matches_dense_reference():
    """dynamic_compose = gate: at dynamic points frame t has density d_t + g_t sigma_s and colour
    (g_t sigma_s c_s + d_t c_t) / (d_t + g_t sigma_s). Here d = (0, 2, 5), g = (1, 1/2, ~0) and the dynamic
    colour is constant per frame, so the reference is a dense composite by hand."""
    model = dynamic_in_region_model(dynamic_compose="gate")
    d, g = torch.tensor([0.0, 2.0, 5.0]), torch.tensor([1.0, 0.5, 0.0])
    colour = torch.tensor([[0.1, 0.2, 0.3], [0.9, 0.5, 0.1], [0.3, 0.8, 0.6]])
    with torch.no_grad():
        model.dyn_density_head.net[-1].bias.copy_(d)
        head = model.dyn_color_head.net[-1]
        head.weight.zero_()
        head.bias.copy_(torch.logit(colour).reshape(-1))
        model.dyn_gate.weight.zero_()
        model.dyn_gate.bias.copy_(torch.tensor([30.0, 0.0, -30.0]))
    rays = ndc_rays(64, seed=4)
    with torch.no_grad():
        out = model(rays, ray_dynamic=torch.ones(64, dtype=torch.bool))
        sigma, dist, rgb = dense_static_reference(model, rays, out)
        pt_dyn = dynamic_points_of_region_model(model, rays, out)
    assert 5 < pt_dyn.any(-1).sum() < 59
    for t in range(T):
        sig_t = torch.where(pt_dyn, d[t] + g[t] * sigma, sigma)
        share = torch.where(pt_dyn, g[t] * sigma / sig_t.clamp_min(1e-10), torch.ones_like(sigma))[..., None]
        w = vr.weights_from_alpha(vr.alpha_from_sigma(sig_t, dist))
        ref = vr.composite(w, share * rgb + (1 - share) * colour[t])
        torch.testing.assert_close(out.rgb[:, t], ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.depth[:, t], (w * out.t).sum(-1) / w.sum(-1), atol=1e-5, rtol=1e-5)
    # frame 0 (no dynamic density, gate open) is the static render itself
    torch.testing.assert_close(out.rgb[:, 0], out.static_rgb, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("compose", ["replace", "gate"])
def test_dynamic_colours_do_not_train_the_static_branch(compose):
    model = dynamic_in_region_model(dynamic_compose=compose)
    rays = ndc_rays(64, seed=4)
    out = model(rays, ray_dynamic=torch.ones(64, dtype=torch.bool))
    out.rgb.sum().backward()
    static = model.density.grid_parameters() + model.appearance.grid_parameters() + \
        model.appearance.net_parameters() + list(model.color_head.parameters())
    assert all(p.grad is None or not p.grad.any() for p in static)
    model.zero_grad(set_to_none=True)
    out = model(rays, ray_dynamic=torch.ones(64, dtype=torch.bool))
    out.static_rgb.sum().backward()  # positive control
    assert all(p.grad is not None and p.grad.any() for p in static)


def region_density_model() -> MixVoxels:
    """Static-only model whose density is 0 outside x idx 3..6, y idx 2..5, z idx 2..4 (+ one cell)."""
    model = tiny_model(static_only=True, resolution=(12, 12, 10), step_ratio=0.5, n_samples_max=16)
    with torch.no_grad():
        for p in model.density.grid_parameters():
            p.zero_()
        model.density.planes[0][0, 0, 2:6, 3:7] = 1.0  # XY plane: [C, y, x]
        model.density.lines[0][0, 0, 2:5, 0] = 2.0  # Z line
    return model


def test_alpha_mask_and_shrink_keep_the_render():
    model = region_density_model()
    # rays through the whole box, many of them crossing the dense region
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(400, 2, generator=g) * 2.4 - 1.2
    rays = RayBatch(torch.cat([xy, -torch.ones(400, 1)], 1),
                    torch.cat([0.1 * torch.randn(400, 2, generator=g), 2 * torch.ones(400, 1)], 1))
    pts = torch.rand(500, 3, generator=g) * 2 - 1
    with torch.no_grad():
        before = model(rays)
        density_before = model.density(pts)
        assert (before.acc > 0.5).sum() > 10 and (before.acc == 0).sum() > 10
        box = model.update_alpha_mask(model.resolution)
        assert model.alpha_mask.grid.float().mean() < 0.2
        masked = model(rays)
        old_aabb = model.aabb.clone()
        model.shrink(box)
        after = model(rays)
    assert model.resolution == [6, 6, 5]
    assert (model.aabb[1] - model.aabb[0] < old_aabb[1] - old_aabb[0]).all()
    assert after.t.shape == before.t.shape  # same samples, so the renders are comparable
    for out in (masked, after):
        torch.testing.assert_close(out.static_rgb, before.static_rgb, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.static_depth, before.static_depth, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.acc, before.acc, atol=1e-5, rtol=1e-5)
    # density at points inside the new box is unchanged (old coordinates -> new normalized coordinates)
    world = old_aabb[0] + (pts + 1) / 2 * (old_aabb[1] - old_aabb[0])
    inside = ((world >= model.aabb[0]) & (world <= model.aabb[1])).all(-1)
    assert inside.sum() > 10
    torch.testing.assert_close(model.density(model.normalize_coords(world[inside])), density_before[inside],
                               atol=1e-5, rtol=1e-5)
    assert density_before[~inside].abs().max() == 0


@pytest.mark.gpu
def test_cuda_forward_matches_cpu():
    model = tiny_model()
    rays = ndc_rays(64, seed=2)
    dyn = torch.arange(64) % 3 == 0
    with torch.no_grad():
        ref = model(rays, ray_dynamic=dyn)
        out = model.to("cuda")(rays.to("cuda"), ray_dynamic=dyn.cuda())
    for name in ("rgb", "depth", "static_rgb", "static_depth", "acc"):
        torch.testing.assert_close(getattr(out, name).cpu(), getattr(ref, name), atol=1e-4, rtol=1e-4)


def test_bounded_rays_sample_inside_the_box():
    model = tiny_model(ndc=False, near_far=(0.1, 10.0))
    origins = torch.tensor([[0.0, 0.0, -3.0], [0.0, 5.0, -3.0], [0.2, 0.1, 0.0]])
    dirs = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    out = model(RayBatch(origins, dirs))
    # ray 0 crosses z in [-1, 1] at t in [2, 4]; ray 1 misses; ray 2 starts inside (near clamps to
    # near_far[0] = 0.1) and leaves at x = 1.5, t = 1.3
    assert (out.t[0] >= 2.0).all() and (out.t[0] <= 4.0).all()
    torch.testing.assert_close(out.dt[0].sum(), torch.tensor(2.0))
    assert (out.t[2] >= 0.1).all() and (out.t[2] <= 1.3).all()
    torch.testing.assert_close(out.dt[2].sum(), torch.tensor(1.2))
    assert out.dt[1].sum() == 0 and out.acc[1] == 0 and out.static_rgb[1].abs().sum() == 0
    assert out.acc[0] > 0.2


@pytest.mark.parametrize("view_dependent", [True, False])
def test_view_dependent_key_controls_the_colour_heads_direction_input(view_dependent):
    """Both colour heads take [features, view direction]; with view_dependent False the direction part is zero."""
    model = tiny_model(view_dependent=view_dependent)
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen[name] = inputs[0][:, -3:].clone()
        return hook

    for name in ("color_head", "dyn_color_head"):
        getattr(model, name).net[0].register_forward_hook(record(name))
    model(ndc_rays(13), ray_dynamic=torch.ones(13, dtype=torch.bool))
    assert set(seen) == {"color_head", "dyn_color_head"}
    for viewdir in seen.values():
        assert len(viewdir) > 0
        if view_dependent:
            torch.testing.assert_close(viewdir.norm(dim=-1), torch.ones(len(viewdir)))
        else:
            assert torch.all(viewdir == 0)


def test_a_dead_dynamic_frame_is_found_and_restarted_from_its_nearest_live_frame():
    from models.dead_frames import dead_frames, probe_points, revive

    model = tiny_model(dynamic_compose="gate")
    points = probe_points(model.aabb, n=8)
    assert points.shape == (512, 3) and dead_frames(model, points) == []
    dens, col = model.dyn_density_head.net[-1], model.dyn_color_head.net[-1]
    opt = torch.optim.Adam([dens.weight, dens.bias, col.weight, col.bias], lr=1e-3)
    for p in opt.param_groups[0]["params"]:  # moments as after some steps
        opt.state[p] = {"step": torch.tensor(5.0), "exp_avg": torch.ones_like(p), "exp_avg_sq": torch.ones_like(p)}
    with torch.no_grad():
        dens.bias[2] = -1e3  # frame 2 (of 3): negative at every point
        model.dyn_gate.bias[1] = 0.7
    assert dead_frames(model, points) == [2]
    assert revive(model, opt, [2]) == [(2, 1)]
    assert torch.equal(dens.weight[2], dens.weight[1]) and dens.bias[2] == dens.bias[1]
    assert torch.equal(col.weight[6:9], col.weight[3:6]) and torch.equal(col.bias[6:9], col.bias[3:6])
    assert model.dyn_gate.bias[2] == 0.7 and model.dyn_gate.bias[0] == 0
    assert not opt.state[dens.bias]["exp_avg"][2].any() and opt.state[dens.bias]["exp_avg"][1].any()
    assert not opt.state[col.weight]["exp_avg_sq"][6:9].any() and dead_frames(model, points) == []


"""Issue-14 options: floater regularizers, lr restart at upsamples, zero_dynamic_sigma, the ellipse rig,
and the multi-view depth-consistency filter."""
import math

import numpy as np
import pytest
import torch

from dataLoader.poses import look_at
from engine.depth_consistency import consistency, lift, project
from engine.train.schedule import lr_factor, upsample_reset_factor
from models.mixvoxels import MixVoxels, ModelConfig
from models.regularizers import (
    background_step,
    distortion_loss,
    near_weight_loss,
    on_background,
    opacity_entropy_loss,
    opacity_loss,
)
from synthetic.content import make_scene, video_cameras


def test_distortion_loss_hand_computed():
    w = torch.tensor([[0.5, 0.0, 0.5]])
    t = torch.tensor([[0.1, 0.2, 0.4]])
    dt = torch.tensor([[0.1, 0.1, 0.1]])
    # pairs: 2 * 0.5 * 0.5 * |0.1 - 0.4| = 0.15; self term: (0.25 * 0.1 + 0.25 * 0.1) / 3
    expected = 0.15 + 0.05 / 3
    assert math.isclose(float(distortion_loss(w, t, dt)), expected, rel_tol=1e-6)


def test_distortion_loss_gradient_matches_brute_force():
    torch.manual_seed(0)
    w = torch.rand(3, 6, dtype=torch.float64, requires_grad=True)
    t = torch.sort(torch.rand(3, 6, dtype=torch.float64), dim=-1).values
    dt = torch.full((3, 6), 0.1, dtype=torch.float64)
    brute = ((w[:, :, None] * w[:, None, :] * (t[:, :, None] - t[:, None, :]).abs()).sum((1, 2))
             + (w.pow(2) * dt).sum(-1) / 3).mean()
    assert torch.allclose(distortion_loss(w, t, dt), brute)
    assert torch.autograd.gradcheck(lambda x: distortion_loss(x, t, dt), (w,))


def test_near_and_entropy_terms():
    w = torch.tensor([[0.2, 0.3, 0.5]])
    t = torch.tensor([[0.05, 0.15, 0.5]])
    assert math.isclose(float(near_weight_loss(w, t, 0.1)), 0.2, rel_tol=1e-6)
    # per-ray bounds [N]: ray 0 penalises its first two samples (0.5), ray 1 none (0): mean 0.25
    w2, t2 = torch.cat([w, w]), torch.cat([t, t])
    assert math.isclose(float(near_weight_loss(w2, t2, torch.tensor([0.2, 0.01]))), 0.25, rel_tol=1e-6)
    assert math.isclose(float(opacity_entropy_loss(torch.tensor([0.5]))), math.log(2), rel_tol=1e-4)
    assert float(opacity_entropy_loss(torch.tensor([1.0]))) < 1e-2


def test_opacity_and_white_background_terms():
    acc = torch.tensor([1.0, 0.5, 0.0])
    assert math.isclose(float(opacity_loss(acc)), (0 + 0.25 + 1) / 3, rel_tol=1e-6)
    rgb = torch.tensor([[0.2, 0.4, 0.6], [0.1, 0.1, 0.1], [0.0, 0.0, 0.0]])
    expected = torch.tensor([[0.2, 0.4, 0.6], [0.6, 0.6, 0.6], [1.0, 1.0, 1.0]])
    assert torch.allclose(on_background(rgb, acc), expected)
    assert [background_step(s, 0.5) for s in range(6)] == [False, True, False, True, False, True]
    assert sum(background_step(s, 0.25) for s in range(100)) == 25
    assert not any(background_step(s, 0.0) for s in range(10))


def test_config_wiring_of_opacity_and_white_background():
    from types import SimpleNamespace

    from models.objective import ObjectiveWeights, StepScales, regularizer_terms, static_rgb_for_loss

    w = ObjectiveWeights(tv_density=0.0, tv_app=0.0, tv_dynamic_factor=0.0, variation=0.0, depth_loss="mse",
                         distortion=0.0, near=0.0, near_t=0.2, opacity_entropy=0.0, opacity=0.5,
                         white_bg_fraction=0.5)
    plain, white = StepScales(tv=1.0, depth=1.0, lr=1.0), StepScales(tv=1.0, depth=1.0, lr=1.0, white_bg=True)
    out = SimpleNamespace(acc=torch.tensor([1.0, 0.5]), static_rgb=torch.tensor([[0.2, 0.2, 0.2], [0.1, 0.2, 0.3]]))
    terms = regularizer_terms(out, w, plain)
    assert set(terms) == {"opacity"} and math.isclose(float(terms["opacity"]), 0.5 * 0.25 / 2, rel_tol=1e-6)
    assert regularizer_terms(out, w, StepScales(tv=1.0, depth=1.0, lr=1.0, opacity=False)) == {}  # before opacity_start
    assert torch.equal(static_rgb_for_loss(out, plain), out.static_rgb)
    assert torch.allclose(static_rgb_for_loss(out, white), torch.tensor([[0.2, 0.2, 0.2], [0.6, 0.7, 0.8]]))
    off = ObjectiveWeights(0.0, 0.0, 0.0, 0.0, "mse", 0.0, 0.0, 0.2, 0.0)
    assert regularizer_terms(out, off, plain) == {}


def test_automatic_opacity_weight_follows_the_scene_kind():
    """opacity < 0 resolves to AUTO_OPACITY on forward-facing (NDC) scenes and to 0 on bounded ones; an explicit
    weight is kept either way."""
    from models.objective import AUTO_OPACITY, ObjectiveWeights

    auto = ObjectiveWeights(1.0, 1.0, 3.0, 0.05, "mse", 0.0, 2.0, -1.0, 0.0, opacity=-1.0)
    assert auto.for_scene(ndc=True).opacity == AUTO_OPACITY == 0.1
    assert auto.for_scene(ndc=False).opacity == 0.0
    explicit = ObjectiveWeights(1.0, 1.0, 3.0, 0.05, "mse", 0.0, 2.0, -1.0, 0.0, opacity=0.3)
    assert explicit.for_scene(ndc=True) is explicit and explicit.for_scene(ndc=False) is explicit


def test_upsample_reset_restarts_the_cosine():
    ups = (100, 200)
    assert upsample_reset_factor(50, 400, "cosine", 0.1, ups) == lr_factor(50, 400, "cosine")
    assert upsample_reset_factor(100, 400, "cosine", 0.1, ups) == 1.0
    expected = math.cos(math.pi / 2 * 300 / 400) / math.cos(math.pi / 2 * 200 / 400)
    assert math.isclose(upsample_reset_factor(300, 400, "cosine", 0.1, ups), expected, rel_tol=1e-9)


def test_zero_dynamic_sigma_zeroes_still_empty_points_only():
    cfg = ModelConfig(n_frames=4, zero_dynamic_sigma=True, sigma_static_thresh=0.1, zero_dynamic_sigma_thresh=1e-5)
    model = MixVoxels(cfg, [[-1, -1, -1], [1, 1, 1]], [4, 4, 4])
    sig_d = torch.tensor([[0.5, 0.5, 0.5, 0.5],    # empty static, constant: zeroed
                          [0.0, 5.0, 0.0, 5.0],    # empty static, changes over time: kept
                          [0.5, 0.5, 0.5, 0.5]])   # static density present: kept
    sigma_s = torch.tensor([0.0, 0.0, 1.0])
    out = model._zero_still_dynamic(sig_d, sigma_s, torch.ones(3))
    assert torch.equal(out[0], torch.zeros(4))
    assert torch.equal(out[1:], sig_d[1:])


def test_ellipse_rig_centre_camera_and_focus():
    scene = make_scene(1, 3, rig="ellipse", texture="brick")
    cams = video_cameras(scene, 8, 0.3)
    assert cams.shape == (8, 3, 4)
    np.testing.assert_allclose(cams[0, :, 3], 0.0)
    x, y = cams[1:, 0, 3], cams[1:, 1, 3]
    assert np.all(np.abs(x) <= 0.3 + 0.03) and np.all(np.abs(y) <= 0.15 + 0.03)
    assert 0.25 < np.abs(x).max() and 0.1 < np.abs(y).max()
    for c in cams:  # every camera looks at the focus point (0, 0, -5)
        to_focus = np.asarray(scene.focus) - c[:, 3]
        np.testing.assert_allclose(-c[:, 2], to_focus / np.linalg.norm(to_focus), atol=1e-9)


def test_consistency_keeps_true_depth_and_rejects_haze():
    cams = np.stack([look_at((x, y, 0.0), (0.0, 0.0, -5.0)) for x, y in [(0, 0), (0.3, 0), (-0.3, 0), (0, 0.2)]])
    h, w, f = 24, 32, 25.0
    # a fronto-parallel wall at world z = -5: camera z of each pixel from the ray/plane intersection
    depth = []
    for c in cams:
        d = lift(np.ones((h, w)), c, f).reshape(h, w, 3) - c[:, 3]
        depth.append((-5.0 - c[2, 3]) / d[..., 2])
    depth = np.stack(depth)
    x, y, z = project(lift(depth[1], cams[1], f), cams[1], f, (h, w))
    np.testing.assert_allclose(z.reshape(h, w), depth[1], rtol=1e-9)
    mask = np.ones_like(depth, dtype=bool)
    good = consistency(depth, mask, cams, f)
    assert good.kept.min() > 0.9 and np.nanmax(good.error) < 1e-3  # nearest-pixel lookup on a slanted wall
    haze = depth * np.random.default_rng(0).uniform(0.2, 0.5, depth.shape)
    bad = consistency(haze, mask, cams, f)
    assert bad.kept.max() < 0.5 and np.nanmin(bad.error) > 0.05


def _wall_depth(cams, h, w, f):
    rays = [lift(np.ones((h, w)), c, f).reshape(h, w, 3) - c[:, 3] for c in cams]
    return np.stack([(-5.0 - c[2, 3]) / d[..., 2] for c, d in zip(cams, rays)]).astype(np.float32)


def test_export_refuses_inconsistent_depth_unless_overridden():
    import pytest

    from core.errors import UserError
    from dataLoader.depth_files import DenseDepth
    from engine.render.static_depth import ExportOptions, filter_consistent

    cams = np.stack([look_at((x, y, 0.0), (0.0, 0.0, -5.0)) for x, y in [(0, 0), (0.3, 0), (-0.3, 0), (0, 0.2)]])
    h, w, f = 24, 32, 25.0
    depth = _wall_depth(cams, h, w, f)
    mask = np.ones(depth.shape, dtype=bool)

    def dense(d):
        return DenseDepth(d, mask, np.ones_like(d), [f"cam{k:02d}" for k in range(4)], (h, w), cams, {})

    good = filter_consistent(dense(depth), f, ExportOptions(), "test")
    assert good.mask.mean() > 0.9
    haze = (depth * np.random.default_rng(0).uniform(0.2, 0.5, depth.shape)).astype(np.float32)
    with pytest.raises(UserError, match="inconsistent"):
        filter_consistent(dense(haze), f, ExportOptions(), "test")
    kept = filter_consistent(dense(haze), f, ExportOptions(allow_inconsistent=True), "test")
    assert kept.mask.mean() < 0.5 and np.all(kept.depth[~kept.mask] == 0)


def test_trainer_applies_opacity_prior_and_white_background(make_cfg):
    """Through the Trainer: the opacity term is added, and on a white-background step the static colour
    loss compares rgb + (1 - acc) with the target."""
    from engine.train.trainer import Trainer
    from models import losses

    trainer = Trainer(make_cfg("opacity_bg", n_iters=4, upsamp_list=(100,), alpha_mask_list=(100,),
                               extra=["--opacity_weight", "0.5", "--white_bg_fraction", "0.5"]))
    trainer.fit()
    assert all("opacity" in t for t in trainer.history["loss_terms"])
    batch = trainer.data.gather(np.arange(0, trainer.data.n_train_rays, 7))
    label = batch.std > trainer.cfg.temporal_variance_threshold
    with torch.no_grad():
        out = trainer.model(batch, jitter=False)
        trainer.step = 1  # a white-background step at fraction 0.5
        terms = trainer.model.loss_terms(batch, out, label, trainer.weights, trainer.step_scales())
    expected = losses.mse(out.static_rgb + (1 - out.acc)[:, None], batch.rgb.mean(1))
    assert torch.allclose(terms["static_rgb"], expected)
    assert torch.allclose(terms["opacity"], 0.5 * (1 - out.acc).pow(2).mean())


def test_gaussian_taps_and_random_blur_taps_by_hand():
    from dataLoader.target_blur import blurred_pixels, gaussian_taps

    offsets, weights = gaussian_taps(0.0)
    assert offsets.tolist() == [[0, 0]] and weights.tolist() == [1.0]
    offsets, weights = gaussian_taps(0.5)  # radius 1: 3x3 taps, centre e^0, edges e^-2, corners e^-4
    e2, e4 = math.exp(-2), math.exp(-4)
    z = 1 + 4 * e2 + 4 * e4
    assert offsets.shape == (9, 2) and math.isclose(float(weights.sum()), 1.0, rel_tol=1e-9)
    assert math.isclose(float(weights[4]), 1 / z, rel_tol=1e-9) and math.isclose(float(weights[0]), e4 / z)
    # pixel (1, 1) of a 4x4 image (flat 5): each draw is a neighbour; frequencies follow the weights
    drawn = blurred_pixels(np.full(40000, 5), (4, 4), 0.5, np.random.default_rng(0))
    assert set(np.unique(drawn).tolist()) == {0, 1, 2, 4, 5, 6, 8, 9, 10}
    assert abs(float((drawn == 5).mean()) - 1 / z) < 0.01  # binomial std-dev of the mean: 0.002
    assert abs(float((drawn == 6).mean()) - e2 / z) < 0.01
    # replicate padding: taps around the corner pixel 0 stay inside the image, on row 0 / column 0 when clipped
    corner = blurred_pixels(np.zeros(1000, dtype=np.int64), (4, 4), 1.5, np.random.default_rng(1))
    assert corner.min() >= 0 and corner.max() <= 15 and (corner == 0).mean() > 0.1


def test_target_blur_schedule_and_trainer_wiring(make_cfg):
    from engine.train.schedule import blur_sigma
    from engine.train.trainer import Trainer

    assert [blur_sigma(s, 100, 2.0, 0.5) for s in (0, 25, 50, 80)] == [2.0, 1.0, 0.0, 0.0]
    assert blur_sigma(0, 100, 0.0, 0.5) == 0.0
    trainer = Trainer(make_cfg("target_blur", n_iters=2, upsamp_list=(100,), alpha_mask_list=(100,),
                               extra=["--target_blur", "1.0"]))
    assert trainer.train.target_blur == 1.0 and trainer.train.target_blur_until == 0.5
    idx = np.arange(0, trainer.data.n_train_rays, 5)
    sharp, blurred = trainer.data.gather(idx), trainer.data.gather(idx, np.random.default_rng(0), blur=1.0)
    assert sharp.rgb_static is None and blurred.rgb_static.shape == (len(idx), 3)
    assert not torch.allclose(blurred.rgb_static, sharp.rgb.mean(1))
    for key in ("rgb", "std", "origins"):  # the dynamic targets and the rays stay as they were
        torch.testing.assert_close(getattr(blurred, key), getattr(sharp, key))
    from models import losses

    label = blurred.std > trainer.cfg.temporal_variance_threshold
    with torch.no_grad():  # the static colour loss compares with the blurred target
        out = trainer.model(blurred, jitter=False)
        terms = trainer.model.loss_terms(blurred, out, label, trainer.weights, trainer.step_scales())
    torch.testing.assert_close(terms["static_rgb"], losses.mse(out.static_rgb, blurred.rgb_static))
    trainer.fit()
    assert trainer.step == 2


def _frames_mode(rgb: torch.Tensor) -> torch.Tensor:
    """[B, T, 3] float colours of whole uint8 levels -> [B, 3] their temporal mode (dataLoader.frame_cache)."""
    from dataLoader.temporal_stats import temporal_mode

    levels = (rgb * 255).round().to(torch.uint8).numpy()[:, None]  # [B, 1, T, 3]
    return torch.from_numpy(temporal_mode(levels)[:, 0]).float() / 255


@pytest.mark.parametrize("target", ["median", "mode"])
def test_cached_static_target(make_cfg, target):
    """static_target median / mode: the static branch's target is the ray's median (the cached lower median)
    or mode colour over frames, and with blur that of the drawn neighbour; the dynamic targets stay the
    frames."""
    from dataLoader.target_blur import blurred_pixels
    from engine.train.trainer import Trainer

    reference = {"median": lambda rgb: rgb.median(dim=1).values, "mode": _frames_mode}[target]
    trainer = Trainer(make_cfg(f"{target}_target", n_iters=2, upsamp_list=(100,), alpha_mask_list=(100,),
                               extra=["--static_target", target]))
    assert trainer.train.static_target == target
    data = trainer.data
    idx = np.arange(0, data.n_train_rays, 7)
    batch = data.gather(idx, static_target=target)
    torch.testing.assert_close(batch.rgb_static, reference(batch.rgb), rtol=0, atol=0)
    torch.testing.assert_close(batch.rgb, data.gather(idx).rgb)
    assert not torch.allclose(batch.rgb_static, batch.rgb.mean(1))
    cam, pix = data.pixel_of(idx)
    taps = blurred_pixels(pix, (data.h, data.w), 1.5, np.random.default_rng(3))
    blurred = data.gather(idx, np.random.default_rng(3), blur=1.5, static_target=target)
    torch.testing.assert_close(blurred.rgb_static, reference(data._colours(cam, taps)), rtol=0, atol=0)
    trainer.fit()
    assert trainer.step == 2


def test_pixel_jitter_rays(make_cfg):
    """Jittered rays pass through the given point of their pixel: at offset 0.5 they are the centre rays,
    and the trainer's option turns them on."""
    from engine.train.trainer import Trainer

    class Half:
        def random(self, shape):
            return np.full(shape, 0.5)

    trainer = Trainer(make_cfg("pixel_jitter", n_iters=2, upsamp_list=(100,), alpha_mask_list=(100,),
                               extra=["--pixel_jitter", "1"]))
    data = trainer.data
    idx = np.arange(0, data.n_train_rays, 3)
    centre = data.gather(idx, jitter=True, rng=Half())
    torch.testing.assert_close(centre.origins, data.train_origins[idx])
    torch.testing.assert_close(centre.directions, data.train_dirs[idx])
    moved = data.gather(idx, jitter=True, rng=np.random.default_rng(0))
    shift = (moved.origins - centre.origins)[:, :2].abs()  # NDC: a pixel is about 2 / W wide on the near plane
    assert float(shift.max()) > 0.1 / data.w and float(shift.max()) < 1.5 / min(data.h, data.w)
    torch.testing.assert_close(moved.rgb, centre.rgb)  # the same pixels' colours
    assert trainer.train.pixel_jitter
    trainer.fit()
    assert trainer.step == 2


@pytest.mark.parametrize("check, amp", [(0, 0), (2, 0), (2, 1)])
def test_trainer_restarts_a_dead_frame_at_its_check_steps_only_when_asked(make_cfg, check, amp):
    from engine.train.trainer import Trainer

    trainer = Trainer(make_cfg(f"dead_frame_{check}_{amp}", n_iters=4, upsamp_list=(100,), alpha_mask_list=(100,),
                               extra=["--dead_frame_check", str(check), "--amp", str(amp)]))
    bias = trainer.model.dyn_density_head.net[-1].bias
    with torch.no_grad():
        bias[1] = -1e4  # frame 1: no positive raw density anywhere
    for step, revived in ((1, False), (2, check > 0)):
        trainer.step = step
        trainer.after_step()
        assert (bias[1] > -1e4).item() == revived
    if amp:  # CPU bfloat16 autocast: the restarted model trains on, finite
        assert trainer.precision.dtype == torch.bfloat16
        loss, _ = trainer.train_step()
        assert torch.isfinite(loss)

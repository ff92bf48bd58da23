"""Metrics pinned by hand-computed cases and scikit-image; visualisation shapes and files."""

import math
import sys
import types

import numpy as np
import pytest
import torch

from engine.evaluation import metrics, visualize


def _rng(seed=0):
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------- PSNR
def test_psnr_of_known_mse():
    assert metrics.psnr(0.01) == pytest.approx(20.0)
    assert metrics.psnr(1e-4) == pytest.approx(40.0)
    assert metrics.psnr(0.0) == math.inf


def test_constant_error_gives_20db():
    gt = np.full((2, 4, 5, 3), 0.5, np.float32)
    pred = gt + 0.1  # MSE = 0.01 -> 20 dB
    assert metrics.video_psnr(pred, gt) == pytest.approx(20.0, abs=1e-4)
    np.testing.assert_allclose(metrics.per_frame_psnr(torch.from_numpy(pred), torch.from_numpy(gt)),
                               [20.0, 20.0], atol=1e-4)


def test_whole_video_vs_per_frame_psnr_differ():
    # Frame 0 error 0.1 (MSE 1e-2, 20 dB), frame 1 error 0.01 (MSE 1e-4, 40 dB).
    gt = np.zeros((2, 11, 11, 3))  # 11 px so that evaluate_video's SSIM window fits
    pred = gt.copy()
    pred[0] += 0.1
    pred[1] += 0.01
    assert metrics.per_frame_psnr(pred, gt) == pytest.approx([20.0, 40.0])
    # whole video: MSE = (1e-2 + 1e-4) / 2 = 5.05e-3 -> 22.967 dB, not the mean 30 dB
    assert metrics.video_psnr(pred, gt) == pytest.approx(-10 * math.log10(5.05e-3))
    out = metrics.evaluate_video(pred, gt)
    assert out["psnr"] == pytest.approx(22.9671, abs=1e-3)
    assert out["psnr_per_frame_mean"] == pytest.approx(30.0)


def test_many_frames_chunked():
    gt = _rng().random((metrics.FRAME_CHUNK * 2 + 3, 12, 12, 3))
    pred = np.clip(gt + _rng(1).normal(0, 0.05, gt.shape), 0, 1)
    mse = np.mean((pred - gt) ** 2)
    assert metrics.video_psnr(pred, gt) == pytest.approx(-10 * math.log10(mse))


# ----------------------------------------------------------------------------- SSIM
def test_ssim_identical_is_one():
    img = _rng().random((20, 24, 3)).astype(np.float32)
    assert metrics.ssim(img, img) == pytest.approx(1.0, abs=1e-6)
    d = metrics.dssim(0.8)
    assert d["dssim1"] == pytest.approx(0.2) and d["dssim2"] == pytest.approx(0.1)


def _smooth(h, w, seed):
    y, x = np.mgrid[0:h, 0:w] / 10.0
    ph = _rng(seed).random(3) * 6
    return np.stack([0.5 + 0.4 * np.sin(x + ph[c]) * np.cos(0.7 * y - ph[c]) for c in range(3)], -1)


@pytest.mark.parametrize("kind", ["random", "smooth"])
def test_ssim_matches_skimage(kind):
    skm = pytest.importorskip("skimage.metrics")
    if kind == "random":
        gt = _rng(2).random((37, 45, 3))
        pred = np.clip(gt + _rng(3).normal(0, 0.1, gt.shape), 0, 1)
    else:
        gt = _smooth(37, 45, 4)
        pred = np.clip(_smooth(37, 45, 5) * 0.3 + gt * 0.7 + _rng(6).normal(0, 0.02, gt.shape), 0, 1)
    ref = skm.structural_similarity(pred, gt, channel_axis=-1, data_range=1.0, gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=False)
    assert metrics.ssim(pred, gt) == pytest.approx(ref, abs=1e-4)
    assert metrics.ssim(torch.tensor(pred, dtype=torch.float32), torch.tensor(gt, dtype=torch.float32)) \
        == pytest.approx(ref, abs=1e-4)


def test_ssim_rejects_tiny_images():
    with pytest.raises(ValueError):
        metrics.ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))


def test_evaluate_video_keys_and_ssim_every():
    gt = _rng(7).random((5, 16, 16, 3)).astype(np.float32)
    pred = np.clip(gt + 0.05, 0, 1)
    out = metrics.evaluate_video(pred, gt, ssim_every=2)
    for key in ("psnr", "psnr_per_frame_mean", "ssim", "dssim1", "dssim2", "ssim_data_range"):
        assert isinstance(out[key], float)
    assert out["ssim_data_range"] == 1.0
    assert out["per_frame"]["psnr"].shape == (5,)
    np.testing.assert_array_equal(out["per_frame"]["ssim_frames"], [0, 2, 4])
    expect = np.mean([metrics.ssim(pred[i], gt[i]) for i in (0, 2, 4)])
    assert out["ssim"] == pytest.approx(expect, abs=1e-9)
    assert out["dssim2"] == pytest.approx((1 - out["ssim"]) / 2)


# ----------------------------------------------------------------------------- depth
def test_depth_metrics_hand_computed():
    gt = np.array([1.0, 2.0, 4.0, 0.0, np.nan, 5.0])
    pred = np.array([1.1, 1.0, 4.0, 3.0, 1.0, 9.0])
    mask = np.array([True, True, True, True, True, False])
    # valid: indices 0, 1, 2 (3 has gt 0, 4 is NaN, 5 masked out)
    out = metrics.depth_metrics(pred, gt, mask)
    assert out["n_valid"] == 3
    assert out["abs_rel"] == pytest.approx((0.1 / 1 + 1.0 / 2 + 0.0) / 3)
    assert out["rmse"] == pytest.approx(math.sqrt((0.01 + 1.0 + 0.0) / 3))
    assert out["delta_1_25"] == pytest.approx(2 / 3)  # ratios 1.1, 2.0, 1.0


def test_depth_metrics_no_valid_pixels_is_unavailable():
    out = metrics.depth_metrics(torch.ones(2, 2), torch.zeros(2, 2))
    assert out["available"] is False and out["reason"] and "abs_rel" not in out


# ----------------------------------------------------------------------------- optional metrics
def test_missing_optional_metrics_are_unavailable(monkeypatch):
    for mod in ("lpips", "flip_evaluator", "pyfvvdp"):
        monkeypatch.setitem(sys.modules, mod, None)  # makes `import mod` raise ImportError
    img = _rng().random((2, 12, 12, 3))
    out = metrics.optional_metrics(img, img)
    assert set(out) == {"lpips", "flip", "jod"}
    for rec in out.values():
        assert rec["available"] is False and "not importable" in rec["reason"]
        assert "value" not in rec


def test_optional_metric_with_fake_flip(monkeypatch):
    calls = []

    def evaluate(reference, test, mode):
        calls.append((reference.shape, mode))
        return np.zeros(reference.shape[:2]), 0.25, {}

    monkeypatch.setitem(sys.modules, "flip_evaluator", types.SimpleNamespace(evaluate=evaluate))
    img = _rng().random((3, 12, 12, 3))
    rec = metrics.optional_metrics(img, img, names=("flip",))["flip"]
    assert rec["available"] is True and rec["value"] == pytest.approx(0.25)
    assert calls == [((12, 12, 3), "LDR")] * 3


def test_failing_optional_metric_reports_reason(monkeypatch):
    def fvvdp(**kwargs):
        raise RuntimeError("no display model")

    monkeypatch.setitem(sys.modules, "pyfvvdp", types.SimpleNamespace(fvvdp=fvvdp))
    img = _rng().random((12, 12, 3))
    rec = metrics.optional_metrics(img, img, names=("jod",))["jod"]
    assert rec == {"available": False, "reason": "jod failed: RuntimeError: no display model"}


def test_lpips_without_local_weights_is_unavailable(monkeypatch, tmp_path):
    pkg = tmp_path / "lpips"
    pkg.mkdir()
    monkeypatch.setitem(sys.modules, "lpips", types.SimpleNamespace(__file__=str(pkg / "__init__.py")))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    img = _rng().random((12, 12, 3))
    rec = metrics.optional_metrics(img, img, names=("lpips",))["lpips"]
    assert rec["available"] is False and "weights" in rec["reason"]


# ----------------------------------------------------------------------------- visualize
def test_colorize_depth_shapes_and_invalid_black():
    depth = np.linspace(1, 5, 6 * 7).reshape(6, 7)
    depth[0, 0] = 0.0
    depth[0, 1] = np.nan
    mask = np.ones_like(depth, bool)
    mask[1, 1] = False
    for inverse in (False, True):
        img = visualize.colorize_depth(torch.from_numpy(depth), mask=mask, inverse=inverse)
        assert img.shape == (6, 7, 3) and img.dtype == np.uint8
        assert not img[0, 0].any() and not img[0, 1].any() and not img[1, 1].any()
        assert img[3, 3].any()
    near = visualize.colorize_depth(depth, vmin=1, vmax=5)
    assert not np.array_equal(near[0, 2], near[-1, -1])
    assert not visualize.colorize_depth(np.zeros((3, 3))).any()


def test_error_heatmap_and_pngs(tmp_path):
    gt = _rng().random((9, 10, 3))
    pred = np.clip(gt + 0.1, 0, 1)
    heat = visualize.error_heatmap(pred, gt)
    assert heat.shape == (9, 10, 3) and heat.dtype == np.uint8
    visualize.save_png(tmp_path / "sub" / "heat.png", heat)
    import imageio.v3 as iio

    np.testing.assert_array_equal(iio.imread(tmp_path / "sub" / "heat.png"), heat)
    with pytest.raises(ValueError):
        visualize.save_png(tmp_path / "bad.png", pred)


def test_plots_write_pngs(tmp_path):
    history = {"iteration": [0, 10, 20, 30], "time_s": [0.0, 5.0, 11.0, 16.0],
               "loss": [0.5, 0.1, 0.05, 0.04], "psnr": [10.0, 15.0, 18.0, 19.0],
               "test_iteration": [15, 30], "test_psnr": [14.0, 18.5]}
    visualize.plot_training_curves(history, tmp_path / "curves.png")
    visualize.plot_training_curves({"iteration": [1, 2], "loss": [1.0, 0.5]}, tmp_path / "c2.png")
    visualize.plot_per_frame(np.array([20.0, 21.0, np.inf]), tmp_path / "pf.png", "PSNR [dB]")
    for name in ("curves.png", "c2.png", "pf.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


# ----------------------------------------------------------------------------- SSIM as MixVoxels reported it
def test_mixvoxels_ssim_matches_scikit_image_old_defaults():
    """MixVoxels' tables: skimage SSIM with its old float defaults (7x7 uniform window, sample covariance,
    data range 2); the toolkit's Gaussian SSIM (data range 1) is a different number on the same pair."""
    from skimage.metrics import structural_similarity

    from engine.evaluation.metrics_mixvoxels import ssim_mixvoxels

    rng = _rng()
    yy, xx = np.mgrid[0:20, 0:26] / 26.0
    gt = np.stack([xx, yy, 0.5 * (xx + yy)], axis=-1)  # smooth, like a photo: the data range matters
    pred = np.clip(gt + 0.05 * rng.standard_normal(gt.shape), 0, 1)
    ref = structural_similarity(gt, pred, channel_axis=-1, data_range=2.0, win_size=7, gaussian_weights=False,
                                use_sample_covariance=True)
    assert ssim_mixvoxels(pred, gt) == pytest.approx(ref, abs=1e-9)
    assert abs(ssim_mixvoxels(pred, gt) - metrics.ssim(pred, gt)) > 0.01
    assert ssim_mixvoxels(gt, gt) == pytest.approx(1.0, abs=1e-12)

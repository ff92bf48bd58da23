"""Evaluation at the end of training and through tools/evaluate.py: metrics.json, per-frame CSV,
optional metrics reported (never 0) when they cannot run, pictures and a report.html that renders."""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import script_env

from dataLoader.dataset import VideoDataset
from engine.checkpoint import load_model
from engine.evaluation.evaluate import evaluate_camera, load_gt_depth
from engine.evaluation.metrics import depth_metrics, evaluate_video
from engine.option_groups import data_options
from engine.render.frames import render_pose
from engine.train.trainer import Trainer
from engine.workflow import evaluate_checkpoint, finish_training

T = 4  # frames of the tiny scene
OPTIONAL = ("lpips", "flip", "jod")


@pytest.fixture(scope="module")
def run_dir(make_cfg) -> Path:
    """A 6-iteration run on the tiny scene, evaluated by the end-of-training code."""
    trainer = Trainer(make_cfg("eval_run", n_iters=6, upsamp_list=(3,), alpha_mask_list=(4,),
                               extra=["--render_test", "1", "--n_test_images", "2"]))
    summary = finish_training(trainer, trainer.fit())
    assert "cam00: PSNR" in summary
    return trainer.run_dir


def metrics_of(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_training_writes_metrics_with_stated_conventions(run_dir):
    m = metrics_of(run_dir)
    assert m["iterations"] == 6 and m["train_time_s"] > 0
    cam = m["test"]["cam00"]
    assert math.isfinite(cam["psnr"]) and math.isfinite(cam["psnr_per_frame_mean"])
    assert len(cam["per_frame"]["psnr"]) == T
    assert cam["psnr_per_frame_mean"] == pytest.approx(np.mean(cam["per_frame"]["psnr"]))
    assert cam["ssim_data_range"] == 1.0 and 0 < cam["ssim"] <= 1
    assert cam["dssim1"] == pytest.approx(1 - cam["ssim"]) and cam["dssim2"] == pytest.approx((1 - cam["ssim"]) / 2)
    assert "data range 1.0" in m["conventions"]["ssim"]


def test_depth_metrics_on_test_and_training_cameras(run_dir):
    """The tiny scene has gt_depth/, so AbsRel, RMSE and delta<1.25 exist for every camera."""
    m = metrics_of(run_dir)
    for rec in [m["test"]["cam00"]["depth"], *m["train_depth"].values()]:
        assert rec["abs_rel"] >= 0 and rec["rmse"] >= 0 and 0 <= rec["delta_1_25"] <= 1 and rec["n_valid"] > 0
    assert sorted(m["train_depth"]) == ["cam01", "cam02", "cam03"]


def test_per_frame_csv(run_dir):
    with open(run_dir / "test" / "cam00_per_frame.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["frame"]) for r in rows] == list(range(T))
    psnr = metrics_of(run_dir)["test"]["cam00"]["per_frame"]["psnr"]
    np.testing.assert_allclose([float(r["psnr"]) for r in rows], psnr, atol=1e-4)
    assert all(r["ssim"] and r["depth_abs_rel"] for r in rows)


def test_missing_optional_metric_is_reported_not_zero(run_dir, tmp_path, monkeypatch):
    """With the optional packages made unimportable, metrics.json says why, and holds no value."""
    for module in ("lpips", "flip_evaluator", "pyfvvdp"):
        monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    evaluate_checkpoint(str(run / "ckpt.pt"), device="cpu")
    optional = metrics_of(run)["test"]["cam00"]["optional"]
    assert sorted(optional) == sorted(OPTIONAL)
    for name, rec in optional.items():
        assert rec["available"] is False, name
        assert "not importable" in rec["reason"]
        assert "value" not in rec
        assert not [v for v in rec.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    assert "n/a" in (run / "report.html").read_text()


def test_pictures_and_report_links(run_dir):
    test = run_dir / "test"
    for name in ("cam00_frame0000.png", "cam00_frame0003.png", "cam00_depth0000.png", "cam00_psnr_per_frame.png",
                 "cam00_static.png", "cam00_rgb.mp4"):
        assert (test / name).is_file(), name
    assert (run_dir / "training_curves.png").is_file()
    page = (run_dir / "report.html").read_text()
    links = re.findall(r'(?:src|href)="([^"]+)"', page) + re.findall(r"href='([^']+)'", page)
    assert "training_curves.png" in links and "test/cam00_frame0000.png" in links
    for link in links:
        assert not link.startswith(("/", "http:", "https:", "file:")), link
        assert (run_dir / link).is_file(), link
    assert "<th>PSNR [dB]</th>" in page and "SSIM (range 1)" in page


def test_tools_evaluate_cli_updates_the_run(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "metrics.json").unlink()
    proc = subprocess.run([sys.executable, "-m", "tools.evaluate", "--ckpt", str(run / "ckpt.pt"),
                           "--device", "cpu", "--picture_frames", "1"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env=script_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("evaluated cam00: PSNR")
    m = metrics_of(run)
    assert m["evaluated_iteration"] == 6 and m["test"]["cam00"]["files"]["frames"] == ["test/cam00_frame0001.png"]
    assert (run / "report.html").is_file()


def test_tools_evaluate_bad_checkpoint(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    proc = subprocess.run([sys.executable, "-m", "tools.evaluate", "--ckpt", str(tmp_path / "junk.pt")],
                          capture_output=True, text=True, timeout=120, env=script_env())
    assert proc.returncode == 2
    assert proc.stderr.startswith("error:") and proc.stderr.count("\n") == 1


def test_report_says_what_ran(run_dir, tiny_scene):
    """Config (collapsed), data directory and frame range, depth source, device, commit; the video is embedded."""
    m = metrics_of(run_dir)
    assert m["data"]["datadir"] == str(tiny_scene.resolve()) and m["data"]["frame_range"] == f"0:{T}"
    assert m["run"]["depth"] == {"source": "none"} and m["run"]["device"] == "cpu"
    assert m["run"]["config"]["n_iters"] == 6
    page = (run_dir / "report.html").read_text()
    assert "<details><summary>resolved config" in page and "n_iters = 6" in page
    assert str(tiny_scene.resolve()) in page and f"0:{T} ({T} frames)" in page
    assert "depth supervision</th><td class='l'>none (colour only)" in page
    assert m["run"]["toolkit_commit"] in page
    assert '<video controls loop muted preload="metadata" src="test/cam00_rgb.mp4">' in page
    assert "no ground-truth depth" not in page  # the tiny scene has gt_depth/


def test_evaluate_on_other_data_records_it(run_dir, tiny_scene, scene_copy, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    evaluate_checkpoint(str(run / "ckpt.pt"), device="cpu", datadir=str(scene_copy))
    m = metrics_of(run)
    assert m["data"]["datadir"] == str(scene_copy.resolve()) and m["data"]["test_cameras"] == ["cam00"]
    assert Path(m["run"]["config"]["datadir"]).resolve() == tiny_scene.resolve()  # what it was trained on
    page = (run / "report.html").read_text()
    assert str(scene_copy.resolve()) in page and "trained on" in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    shot = tmp_path / "report.png"
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=1200,1600", f"--screenshot={shot}", (run_dir / "report.html").as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    import imageio.v2 as imageio

    img = imageio.imread(shot)[..., :3].astype(np.float64)
    assert img.shape[:2] == (1600, 1200)
    colourful = np.abs(img - img.mean(-1, keepdims=True)).sum(-1) > 60  # plots and renders, not just text
    assert colourful.mean() > 0.01


def test_frame_chunked_evaluation_equals_the_whole_video_metrics(run_dir):
    """One frame per chunk (a buffer smaller than a frame) scores exactly what the whole float video gives."""
    model, norm, state = load_model(run_dir / "ckpt.pt")
    data = VideoDataset(data_options(argparse.Namespace(**state["config"])), normalization=norm)
    k = data.test_idx[0]
    ref = render_pose(model, data.c2w[k], data.h, data.w, data.focal, norm, "cpu")
    gt = data.frames_of(k)
    want = evaluate_video(ref.rgb, gt.astype(np.float32) / 255.0)
    gt_depth = load_gt_depth(data.opts.datadir, data.cam_names[k], 0, T, (data.h, data.w))
    want_depth = depth_metrics(ref.depth, gt_depth)
    got, ev = evaluate_camera(model, data, k, "cpu", picture_frames=[1], max_buffer_bytes=1)
    assert got["psnr"] == pytest.approx(want["psnr"], rel=1e-6)
    np.testing.assert_allclose(got["per_frame"]["psnr"], want["per_frame"]["psnr"], rtol=1e-6)
    np.testing.assert_allclose(got["per_frame"]["ssim"], want["per_frame"]["ssim"], rtol=1e-6)
    for key in ("abs_rel", "rmse", "delta_1_25", "n_valid"):
        assert got["depth"][key] == pytest.approx(want_depth[key], rel=1e-6)
    assert list(ev.pictures) == [1] and ev.rgb8.dtype == np.uint8 and ev.rgb8.shape == gt.shape
    np.testing.assert_allclose(ev.pictures[1][0], ref.rgb[1], atol=1e-6)
    np.testing.assert_allclose(ev.static_rgb, ref.static_rgb, atol=1e-6)

"""Watching a run: TensorBoard scalars and images read back from the event file, the periodic test PSNR
(checked against an independent render), a history.json that survives SIGKILL, labelled panels."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_TRAIN
from test_static_depth import gt_depth_file

from engine import panels
from engine.evaluation.metrics import psnr as mse_to_psnr
from engine.render.frames import render_pose
from engine.train.schedule import lr_factor
from engine.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
N_ITERS, VIS_EVERY, N_VIS = 8, 4, 2

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


@pytest.fixture(scope="module")
def tb_run(make_cfg, tiny_scene, tmp_path_factory):
    """8 iterations with dense depth supervision, a log every 2 and a 2-frame test every 4 iterations."""
    depth_file = gt_depth_file(tiny_scene, tmp_path_factory.mktemp("depth") / "d.npz")
    trainer = Trainer(make_cfg("tb_run", n_iters=N_ITERS, upsamp_list=(4,), alpha_mask_list=(6,),
                               extra=["--vis_every", str(VIS_EVERY), "--n_vis", str(N_VIS),
                                      "--progress_refresh_rate", "2", "--depth_source", "static_model",
                                      "--depthmap_npy_path", str(depth_file)]))
    trainer.fit()
    acc = event_accumulator.EventAccumulator(str(trainer.run_dir / "tensorboard"),
                                             size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return trainer, acc, json.loads((trainer.run_dir / "history.json").read_text())


def series(acc, tag: str) -> dict[int, float]:
    return {e.step: e.value for e in acc.Scalars(tag)}


def test_every_loss_term_and_the_learning_rates_are_in_the_event_file(tb_run):
    trainer, acc, history = tb_run
    steps = history["iteration"]
    assert steps == [2, 4, 6, 8]
    terms = set().union(*history["loss_terms"])
    assert {"static_rgb", "tv_static", "tv_dynamic", "variation_bce", "depth"} <= terms
    for term in terms:
        logged = {s: t[term] for s, t in zip(steps, history["loss_terms"]) if term in t}
        got = series(acc, f"loss/{term}")
        assert sorted(got) == sorted(logged), term
        for s, v in logged.items():
            assert got[s] == pytest.approx(v, rel=1e-6), (term, s)  # float32 in the event file
    total = series(acc, "loss/total")
    for s, loss in zip(steps, history["loss"]):
        assert total[s] == pytest.approx(loss, rel=1e-6)
    cfg = trainer.cfg
    for group, base in (("static_grids", cfg.lr_init), ("dynamic_nets", cfg.lr_dynamic_basis)):
        lr = series(acc, f"lr/{group}")
        for s in steps:  # the lr of step s's update: the schedule at iteration s - 1
            assert lr[s] == pytest.approx(base * lr_factor(s - 1, cfg.n_iters, cfg.lr_decay), rel=1e-6), (group, s)
    tags = set(acc.Tags()["scalars"])
    assert {"train/psnr", "grid/voxels", "grid/samples_per_ray", "speed/rays_per_s",
            "depth/supervised_fraction", "depth/weight"} <= tags
    assert all(0 < v <= 1 for v in series(acc, "depth/supervised_fraction").values())
    voxels = series(acc, "grid/voxels")
    assert voxels[2] == pytest.approx(32 ** 3, rel=0.1) and voxels[8] == pytest.approx(48 ** 3, rel=0.1)


def test_periodic_test_psnr_matches_an_independent_render(tb_run):
    """The test at the last iteration scores the final model: recompute it from a full render."""
    trainer, acc, history = tb_run
    assert history["test_iteration"] == [4, 8]
    got = series(acc, "test/psnr")
    assert sorted(got) == [4, 8]
    for s, v in zip(history["test_iteration"], history["test_psnr"]):
        assert got[s] == pytest.approx(v, rel=1e-6)
    data, k = trainer.data, trainer.data.test_idx[0]
    ref = render_pose(trainer.model, data.c2w[k], data.h, data.w, data.focal, data.normalization, "cpu")
    gt = data.frames_of(k).astype(np.float64) / 255.0
    frames = [0, data.n_frames - 1]  # N_VIS = 2 evenly spaced frames
    want = mse_to_psnr(np.mean([np.mean((ref.rgb[t] - gt[t]) ** 2) for t in frames]))
    assert history["test_psnr"][-1] == pytest.approx(want, abs=1e-3)
    images = set(acc.Tags()["images"])
    for t in frames:
        assert {f"test/cam00_f{t:04d}/rgb_gt_error", f"test/cam00_f{t:04d}/depth"} <= images
        assert (trainer.run_dir / "vis" / f"cam00_f{t:04d}_it{N_ITERS:06d}_depth.png").is_file()


def test_progress_bar_shows_the_depth_loss(tb_run):
    trainer = tb_run[0]

    class Bar:
        n = 0

        def set_postfix(self, postfix):
            self.postfix = postfix

        def update(self, k):
            self.n += k

    bar = Bar()
    trainer.monitor.log_step(trainer, 0.5, 20.0, bar)
    assert set(bar.postfix) == {"loss", "psnr", "depth", "rays_s"}
    assert float(bar.postfix["depth"]) == pytest.approx(float(trainer.last_terms["depth"]), rel=1e-2)


def test_tensorboard_0_writes_no_event_file(make_cfg):
    trainer = Trainer(make_cfg("tb_off", n_iters=2, upsamp_list=(), alpha_mask_list=(), extra=["--tensorboard", "0"]))
    trainer.fit()
    assert not (trainer.run_dir / "tensorboard").exists()
    assert json.loads((trainer.run_dir / "history.json").read_text())["iteration"] == [1, 2]


def test_sigkilled_run_keeps_its_curve(scene_copy, tmp_path):
    """history.json is rewritten atomically while training: after SIGKILL it holds the curve so far."""
    cmd = [sys.executable, str(ROOT / "train.py"), "--datadir", str(scene_copy), "--basedir", str(tmp_path),
           "--expname", "killed", *TINY_TRAIN, "--n_iters", "100000", "--upsamp_list", "--update_AlphaMask_list",
           "--vis_every", "3", "--n_vis", "1", "--tensorboard", "0"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = tmp_path / "killed" / "history.json"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if path.is_file() and len(json.loads(path.read_text())["test_psnr"]) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "training ended before it was killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    history = json.loads(path.read_text())
    n = len(history["iteration"])
    assert history["iteration"] == list(range(1, n + 1)) and n >= 6  # refresh rate 1: every iteration
    assert len(history["loss"]) == len(history["psnr"]) == len(history["loss_terms"]) == n
    assert history["test_iteration"][:2] == [3, 6] and all(np.isfinite(history["test_psnr"]))
    assert not (tmp_path / "killed" / "ckpt.pt").exists()  # nothing but the monitor wrote it


# ---------------------------------------------------------------------- labelled panels
def test_panels_claim_ground_truth_only_where_given():
    rng = np.random.default_rng(0)
    rgb, gt = rng.random((12, 16, 3)), rng.random((12, 16, 3))
    depth = 1 + rng.random((12, 16))
    alone, with_gt = panels.frame_panel(rgb, None, 0.25), panels.frame_panel(rgb, gt, 0.25)
    assert with_gt.shape[1] > 2.5 * alone.shape[1]  # three tiles and a colour bar vs one tile
    d1, d2 = panels.depth_panel(depth), panels.depth_panel(depth, depth)
    assert d2.shape[1] > d1.shape[1] and d1.dtype == np.uint8 and d1.shape[2] == 3


def test_disparity_limits_ignore_invalid_pixels():
    depth = np.array([[1.0, 2.0], [0.0, np.nan]])
    lo, hi = panels.disparity_limits(depth, percentiles=(0, 100))
    assert (lo, hi) == (0.5, 1.0)  # 1/2 .. 1/1; zero and NaN depth are invalid


def test_log_lines_do_not_land_on_a_progress_bar():
    """Under run_main a log line clears the live bar first (the line starts a fresh terminal line)."""
    code = ("import logging, sys\nfrom tqdm import tqdm\nfrom engine.cli import run_main\n"
            "def main():\n"
            "    with tqdm(total=3, desc='bar', file=sys.stderr, mininterval=0) as bar:\n"
            "        bar.update(1)\n"
            "        logging.getLogger('engine.test').info('a log line')\n"
            "        bar.update(1)\n"
            "run_main(main)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    before = proc.stderr[:proc.stderr.index("I engine.test: a log line")]
    assert "bar:" in before and before.endswith(("\r", "\n"))  # the bar was drawn, then cleared

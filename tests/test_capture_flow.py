"""The static-distillation chain as a real capture runs it: no ground-truth poses anywhere.

Video frames and a separate static capture (photos only) -> ``imgs2poses.py --static_dir`` (one SfM,
one world) -> ``prepare_static.py`` -> ``train.py --static_only 1`` -> ``static_model2depth.py`` ->
``train.py`` with the dense depth overlay. SfM's world has its own scale, so the exported depth is
compared with the generator's ground truth up to one global factor.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import imgs2poses
import prepare_static
import static_model2depth
from bench.sfm_accuracy import SMALLEST_RELIABLE
from dataLoader.depth_files import load_dense_depth
from dataLoader.scene_layout import SceneDir
from dataLoader.video_io import read_png
from synthetic.scene import write_scene

REPO = Path(__file__).resolve().parents[1]
W, H = SMALLEST_RELIABLE
SMALL_MODEL = ["--device", "cpu", "--seed", "0", "--batch_size", "1024", "--N_voxel_init", str(32 ** 3),
               "--N_voxel_final", str(48 ** 3), "--n_lamb_sigma", "8", "4", "4", "--n_lamb_sh", "8", "4", "4",
               "--n_lamb_sigma_dynamic", "4", "2", "2", "--n_lamb_sh_dynamic", "8", "4", "4",
               "--featureC", "32", "--featureD", "32", "--static_featureC", "32", "--render_test", "0",
               "--save_every", "100000", "--scene_box", "-1.5", "-1.5", "-1"]


def copy_photos(src: Path, dst: Path) -> None:
    """Only the frames: what a camera rig records."""
    shutil.copytree(SceneDir(src).frames, SceneDir(dst).frames)


@pytest.mark.slow
def test_photos_only_capture_to_depth_supervised_training(tmp_path):
    truth = tmp_path / "truth"
    write_scene(truth, n_cams=5, n_frames=3, width=W, height=H, n_static_views=10, supersample=1, video=False,
                texture="detailed")
    video, static = tmp_path / "video", tmp_path / "static"
    copy_photos(truth, video)
    copy_photos(truth / "static", static)

    imgs2poses.main([str(video), "--static_dir", str(static)])
    assert SceneDir(video).poses.is_file() and SceneDir(static).poses.is_file()
    prepare_static.main(["--static_data_path", str(static)])
    runs = tmp_path / "runs"
    train = [sys.executable, "train.py", "--basedir", str(runs), "--overwrite", "1", *SMALL_MODEL]
    proc = subprocess.run([*train, "--datadir", str(static), "--expname", "static", "--static_only", "1",
                           "--test_cams", "--n_iters", "300", "--upsamp_list", "45", "90", "135",
                           "--update_AlphaMask_list", "120", "--lr_init", "0.04", "--N_voxel_final", str(64 ** 3),
                           "--n_lamb_sigma", "16", "4", "4"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]

    static_model2depth.main(["--ckpt", str(runs / "static" / "ckpt.pt"), "--datadir", str(video)])
    dense = load_dense_depth(SceneDir(video).dense_depth)
    assert list(dense.cam_names) == ["cam01", "cam02", "cam03", "cam04"]  # every training camera
    for cam in dense.cam_names:  # a labelled preview (map | mask) per camera beside the file
        assert read_png(video / "depth" / f"all_depth_{cam}.png").shape[2] == 3
    ratios, errors = [], []
    for k, cam in enumerate(dense.cam_names):
        gt = np.load(SceneDir(truth).gt_depth(cam))[0]
        static_px = dense.mask[k] & (np.ptp(np.load(SceneDir(truth).gt_depth(cam)), axis=0) == 0)
        r = dense.depth[k][static_px] / gt[static_px]
        ratios.append(np.median(r))
        errors.append(np.median(np.abs(r / np.median(r) - 1)))
    assert np.ptp(ratios) < 0.02 * np.mean(ratios)  # one SfM scale for every camera
    assert max(errors) < 0.05, errors  # the depth is right up to that scale

    proc = subprocess.run([*train, "--datadir", str(video), "--expname", "dyn", "--n_iters", "20",
                           "--upsamp_list", "10", "--update_AlphaMask_list", "15", "--n_variation_iters", "5",
                           "--depth_config", "configs/depth/static_model.txt"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "dense depth:" in proc.stderr
    terms = json.loads((runs / "dyn" / "history.json").read_text())["loss_terms"]
    assert all(t.get("depth", 0) > 0 for t in terms)

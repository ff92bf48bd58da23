"""Behaviour pin: the demo config (configs/demo.txt) at seed 0 on CPU gives exactly the recorded metrics.

Refactors must not change what training computes. The demo config's code paths run (dynamic model,
variation warm-up, upsampling, alpha mask + shrink, test evaluation) on the tiny scene with fewer
iterations and a smaller grid, once without depth, once with sparse keypoint depth (``colmap``, DS-NeRF
``ds_kl``) and once with dense static-model depth maps. The expected numbers were recorded with the code
before the refactor of issue 13 (one thread; CPU float32) and re-recorded once, deliberately, when the
per-camera near penalty became a default (``near_weight`` 2, issue 14) and when the MSE depth loss moved to
the opacity-normalised rendered depth (``static_model`` only). The static-model run keeps the depth weight it
was recorded with (0.1) when the overlay's default moved to 1.0, and every run keeps the opacity prior, the
coarse-to-fine colour targets and the median static targets off (``--opacity_weight 0 --target_blur 0
--static_target mean``), as recorded, now that they are defaults: config values, not code behaviour.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from dataLoader.depth_files import DenseDepth, save_dense_depth, save_depth_table
from dataLoader.poses import load_poses_bounds
from dataLoader.scene_layout import SceneDir
from engine import options
from engine.train.trainer import Trainer
from engine.workflow import finish_training
from synthetic.keypoints import gt_keypoint_table

# The demo config with a schedule and grid scaled to the 32x24 tiny scene (every other key from the file).
DEMO_OVERRIDES = ["--device", "cpu", "--seed", "0", "--n_iters", "40", "--batch_size", "512",
                  "--N_voxel_init", str(24 ** 3), "--N_voxel_final", str(40 ** 3),
                  "--upsamp_list", "10", "20", "30", "--update_AlphaMask_list", "25",
                  "--n_variation_iters", "10", "--n_test_images", "0", "--progress_refresh_rate", "5",
                  "--opacity_weight", "0", "--target_blur", "0", "--static_target", "mean"]

DEPTH = {
    "none": [],
    "colmap": ["--depth_config", "configs/depth/colmap.txt", "--depth_loss", "ds_kl"],
    "static_model": ["--depth_config", "configs/depth/static_model.txt", "--depth_lambda", "0.1"],
}

# (test PSNR, test SSIM, last logged loss, last logged depth term or None)
PINNED = {
    "none": (21.214806538084005, 0.637645009550137, 0.020703213289380074, None),
    "colmap": (20.183756550120666, 0.5803695638754528, 0.16582521796226501, 0.1409449726343155),
    "static_model": (21.166448975970393, 0.6624436947318411, 0.02178085222840309, 0.0005873432382941246),
}


@pytest.fixture(scope="module")
def depth_scene(tiny_scene, tmp_path_factory):
    """The tiny scene plus ground-truth depth in both depth-file formats (colmap_depth.npz, depth/all_depth.npz)."""
    scene = tmp_path_factory.mktemp("pin") / "scene"
    shutil.copytree(tiny_scene, scene, ignore=shutil.ignore_patterns("cache"))
    rig = load_poses_bounds(SceneDir(scene).poses)
    names = list(rig.names)
    hw = np.load(SceneDir(scene).gt_depth(names[0])).shape[1:]
    save_depth_table(SceneDir(scene).sparse_depth, gt_keypoint_table(scene, names, hw, n_per_cam=60))
    z = np.stack([np.load(SceneDir(scene).gt_depth(c))[0] for c in names])
    save_dense_depth(SceneDir(scene).dense_depth,
                     DenseDepth(z, np.ones_like(z, bool), np.ones_like(z), names, hw, rig.c2w, {}))
    return scene


def run_demo(scene, basedir, name: str) -> tuple[float, float, float, float | None]:
    argv = ["--config", "configs/demo.txt", "--datadir", str(scene), "--basedir", str(basedir),
            "--expname", name, *DEMO_OVERRIDES, *DEPTH[name]]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(options.resolve(options.parse(argv)))
        finish_training(trainer, trainer.fit())
    finally:
        torch.set_num_threads(threads)
    metrics = json.loads((basedir / name / "metrics.json").read_text())
    test = metrics["test"]["cam00"]
    terms = trainer.history["loss_terms"][-1]
    return test["psnr"], test["ssim"], trainer.history["loss"][-1], terms.get("depth")


@pytest.mark.parametrize("name", list(DEPTH))
def test_demo_metrics_are_pinned(depth_scene, tmp_path, name):
    got = run_demo(depth_scene, tmp_path, name)
    want = PINNED[name]
    assert (got[3] is None) == (want[3] is None)
    # On the machine that recorded them the values agree to 1e-6 (bit for bit: the issue-13 refactor was checked
    # that way). Another CPU or BLAS rounds float32 kernels differently and 40 Adam steps carry that on, so the
    # bound sits well above that noise floor and well below what any change of behaviour moves.
    np.testing.assert_allclose([g for g in got if g is not None], [w for w in want if w is not None],
                               rtol=2e-3, atol=2e-4)

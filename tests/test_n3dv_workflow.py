"""The N3DV workflow end to end on an N3DV-shaped scene: videos + poses_bounds.npy only (one camera
to exclude, like coffee_martini's unsynchronised one) -> prepare_video.py -> train with exclude_cams;
the trained resolution is the one the config states (capture size / downsample), reached in one step."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.errors import UserError
from dataLoader.dataset import DataOptions, VideoDataset
from engine.train.trainer import Trainer
from synthetic.scene import write_scene
from tests.conftest import tiny_config
from tools import prepare_video

CAPTURE_W, CAPTURE_H = 64, 48


@pytest.fixture(scope="module")
def n3dv_scene(tmp_path_factory) -> Path:
    """cam00..cam04 as top-level mp4s at the capture size and a 5-row poses_bounds.npy, nothing else."""
    root = tmp_path_factory.mktemp("n3dv")
    write_scene(root / "synthetic", n_cams=5, n_frames=4, width=CAPTURE_W, height=CAPTURE_H,
                n_static_views=0, supersample=1, video=True)
    scene = root / "scene"
    scene.mkdir()
    for video in sorted((root / "synthetic" / "videos").glob("*.mp4")):
        shutil.copy(video, scene / video.name)
    shutil.copy(root / "synthetic" / "poses_bounds.npy", scene / "poses_bounds.npy")
    return scene


def _prepared(n3dv_scene: Path, tmp_path: Path, downsample: float) -> Path:
    scene = tmp_path / "coffee"
    shutil.copytree(n3dv_scene, scene)
    prepare_video.main([str(scene), "--downsample", f"{downsample:g}"])
    assert sorted(p.name for p in (scene / "frames").iterdir()) == [f"cam{i:02d}" for i in range(5)]
    return scene


def test_prepare_then_train_with_an_excluded_camera(n3dv_scene, tmp_path, caplog):
    scene = _prepared(n3dv_scene, tmp_path, downsample=2)
    cfg = tiny_config(scene, tmp_path / "log", "coffee", n_iters=10, upsamp_list=(6,), alpha_mask_list=(8,),
                      extra=["--exclude_cams", "cam03", "--downsample", "2"])
    with caplog.at_level(logging.INFO, logger="engine.train.trainer"):
        trainer = Trainer(cfg)
    # the config states downsample 2 of the 64x48 capture: 32x24, exactly the extracted frames
    assert (trainer.data.w, trainer.data.h) == (CAPTURE_W // 2, CAPTURE_H // 2)
    assert trainer.data.cam_names == ("cam00", "cam01", "cam02", "cam04")
    assert len(trainer.data.rig) == 4
    rows = np.load(scene / "poses_bounds.npy")
    kept = np.concatenate([trainer.data.rig.c2w[:, :, 3], trainer.data.rig.bounds], axis=1)
    np.testing.assert_array_equal(kept, rows[[0, 1, 2, 4]][:, [3, 8, 13, 15, 16]])  # centres and bounds
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("training on"))
    assert "32x24 px (capture 64x48 / downsample 2)" in line
    assert "4 cameras (3 train, test ['cam00'], excluded ['cam03'])" in line and "4 frames" in line
    trainer.fit()
    assert trainer.step == 10


def test_excluded_camera_without_its_video_selects_the_same_rows(n3dv_scene, tmp_path):
    scene = tmp_path / "coffee"
    shutil.copytree(n3dv_scene, scene)
    (scene / "cam03.mp4").unlink()  # the README of old told users to delete the video
    prepare_video.main([str(scene)])
    with pytest.raises(UserError, match="5 pose rows but 4 camera folders"):
        VideoDataset(DataOptions(scene))
    data = VideoDataset(DataOptions(scene, downsample=4, exclude_cams=("cam03",)))
    assert data.cam_names == ("cam00", "cam01", "cam02", "cam04")
    assert (data.w, data.h) == (16, 12)  # full-size frames reduced once, to capture / 4
    rows = np.load(scene / "poses_bounds.npy")
    np.testing.assert_array_equal(data.rig.bounds, rows[[0, 1, 2, 4], 15:])


def test_frames_smaller_than_the_stated_size_are_refused(n3dv_scene, tmp_path):
    scene = _prepared(n3dv_scene, tmp_path, downsample=2)
    with pytest.raises(UserError, match=r"frames are 32x24 but downsample 1 asks for 64x48"):
        VideoDataset(DataOptions(scene, downsample=1))
    with pytest.raises(UserError, match=r"exclude_cams: \['cam9'\] name no camera"):
        VideoDataset(DataOptions(scene, downsample=2, exclude_cams=("cam9",)))

"""COLMAP depth in the dataset's own world, and SfM that keeps trying.

- ``colmap2depth.py --triangulate 1`` on a ``detailed`` synthetic scene: the model's poses are the
  poses file's, the file is untouched, and keypoint depths match ``gt_depth`` within 2 % (median).
- ``imgs2poses.py --overwrite 1`` keeps a backup of the poses file it replaces.
- ``colmap.run_sfm`` retries the mapper with the next seed when a seed leaves cameras out, and
  names the cameras still missing (with their verified matches) when every seed does.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import colmap2depth
import imgs2poses
from bench.sfm_accuracy import SMALLEST_RELIABLE
from core.errors import UserError
from dataLoader import colmap
from dataLoader.poses import load_poses_bounds
from synthetic.scene import write_scene

SCENE = dict(n_cams=5, n_frames=2, width=SMALLEST_RELIABLE[0], height=SMALLEST_RELIABLE[1], n_static_views=0,
             video=False, texture="detailed")


def _digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def triangulated(tmp_path_factory) -> tuple[Path, str]:
    scene = tmp_path_factory.mktemp("fixed") / "scene"
    write_scene(scene, **SCENE)
    before = _digest(scene / "poses_bounds.npy")
    colmap2depth.main(["--datadir", str(scene), "--triangulate", "1"])
    return scene, before


def test_fixed_pose_depths_match_ground_truth(triangulated):
    scene, before = triangulated
    assert _digest(scene / "poses_bounds.npy") == before  # the shipped poses are never replaced
    table = np.load(scene / "colmap_depth.npz")
    assert list(table["cam_names"]) == [f"cam{k:02d}" for k in range(SCENE["n_cams"])]
    rel = []
    for k, cam in enumerate(table["cam_names"]):
        gt = np.load(scene / "gt_depth" / f"{cam}.npy")[0]  # frame 0: the frame that was matched
        sel = table["cam_index"] == k
        assert sel.sum() >= 50
        row, col = table["y"][sel].astype(int), table["x"][sel].astype(int)  # pixel centres at +0.5
        rel.append(np.abs(table["depth"][sel] - gt[row, col]) / gt[row, col])
    assert np.median(np.concatenate(rel)) < 0.02


def test_fixed_pose_model_sits_at_the_files_poses(triangulated):
    scene, _ = triangulated
    rig = load_poses_bounds(scene / "poses_bounds.npy")
    names = [f"cam{k:02d}" for k in range(SCENE["n_cams"])]
    rec = colmap.read_model(scene / "sparse" / "0")
    c2w = colmap.model_c2w(rec, colmap.image_ids_for_cameras(rec, names))
    np.testing.assert_allclose(c2w, rig.c2w, atol=1e-6)
    with pytest.raises(UserError, match="a model exists; pass --overwrite 1"):
        colmap2depth.main(["--datadir", str(scene), "--triangulate", "1", "--out", str(scene / "other.npz")])


def test_imgs2poses_overwrite_keeps_a_backup(triangulated, tmp_path):
    scene, before = triangulated
    model = tmp_path / "model"
    colmap.write_model(colmap.read_model(scene / "sparse" / "0"), model)
    with pytest.raises(UserError, match="poses_bounds.npy: already exists"):
        imgs2poses.main([str(scene), "--sparse_dir", str(model)])
    assert _digest(scene / "poses_bounds.npy") == before
    imgs2poses.main(["--datadir", str(scene), "--sparse_dir", str(model), "--overwrite", "1"])
    assert _digest(scene / "poses_bounds.backup.npy") == before
    imgs2poses.main(["--datadir", str(scene), "--sparse_dir", str(model), "--overwrite", "1"])
    assert (scene / "poses_bounds.backup2.npy").is_file() and _digest(scene / "poses_bounds.backup.npy") == before


def test_sfm_retries_a_seed_that_leaves_cameras_out(triangulated, tmp_path, monkeypatch):
    """Seed 0's mapper is made to lose two cameras (deterministically); seed 1 registers all."""
    scene, _ = triangulated
    real_map = colmap._map
    seeds = []

    def flaky_map(workspace, n_images, opt, seed):
        seeds.append(seed)
        models = real_map(workspace, n_images, opt, seed)
        if seed == 0:
            for rec in models.values():
                for image_id in sorted(rec.reg_image_ids())[:2]:
                    rec.deregister_frame(rec.image(image_id).frame_id)
        return models

    monkeypatch.setattr(colmap, "_map", flaky_map)
    groups = [colmap.ImageGroup(tuple(f"cam{k:02d}.png" for k in range(SCENE["n_cams"])),
                                tuple(scene / "frames" / f"cam{k:02d}" / "0000.png" for k in range(SCENE["n_cams"])))]
    rec = colmap.run_sfm(groups, tmp_path / "work", colmap.SfmOptions(seed=0, attempts=3))
    assert seeds == [0, 1] and rec.num_reg_images() == SCENE["n_cams"]
    with pytest.raises(UserError, match=r"registered 3 of 5 images with seeds \[0\]; not registered: "
                                        r"cam0\d.png \(\d+ verified matches\)"):
        colmap.run_sfm(groups, tmp_path / "work1", colmap.SfmOptions(seed=0, attempts=1))

"""COLMAP depth end to end, and the training side's keypoint handling against hand-made tables.

- A ``detailed`` synthetic scene goes through ``imgs2poses.py`` (real pycolmap SfM),
  ``colmap2depth.py`` and ``train.py --depth_source colmap``; with the same seed
  the depth term pulls the static depth toward the COLMAP targets (vs ``--depth_source none``).
- :class:`dataLoader.depth_targets.KeypointTargets` on a scene with ground-truth poses: a
  ``colmap_depth.npz`` built from ``gt_depth`` at chosen pixels gives NDC targets
  t = 1 + 1/Z of the 3D points computed by hand; test-camera and dynamic keypoints are dropped;
  a table naming cameras the scene does not have is refused.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_TRAIN, tiny_config

import colmap2depth
import imgs2poses
from bench.sfm_accuracy import SMALLEST_RELIABLE
from core.errors import UserError
from dataLoader.dataset import VideoDataset
from dataLoader.depth_files import save_depth_table
from dataLoader.depth_targets import KeypointTargets
from dataLoader.poses import load_poses_bounds
from dataLoader.scene_layout import SceneDir
from dataLoader.video_io import read_png
from engine.checkpoint import load_model
from engine.option_groups import data_options, depth_target_options
from engine.train.trainer import Trainer
from models.types import RayBatch
from synthetic.scene import write_scene

REPO = Path(__file__).resolve().parents[1]
# The smallest size at which SfM is reliable (bench/sfm_accuracy.py); 4 frames so that the
# moving objects make dynamic pixels.
SFM_SCENE = dict(n_cams=5, n_frames=4, width=SMALLEST_RELIABLE[0], height=SMALLEST_RELIABLE[1], n_static_views=0,
                 video=False, texture="detailed")
N_ITERS = 12
STD_THRESHOLD = 0.02  # --temporal_variance_threshold default: pixels above it are dynamic
DEPTH_ARGS = ["--depth_source", "colmap", "--depth_lambda", "1.0",
              "--depth_batch_fraction", "0.5"]


@pytest.fixture(scope="module")
def sfm_scene(tmp_path_factory) -> Path:
    """Detailed scene after imgs2poses (SfM, true focal as a fixed prior) and colmap2depth. Read-only."""
    scene = tmp_path_factory.mktemp("colmap_pipeline") / "scene"
    write_scene(scene, **SFM_SCENE)
    focal = SceneDir(scene).load_rig().hwf[2]
    imgs2poses.main([str(scene), "--overwrite", "1", "--focal_prior", str(focal), "--refine_focal", "0"])
    colmap2depth.main([str(scene)])
    return scene


def _train_argv(datadir: Path, basedir: Path, expname: str, extra: list[str]) -> list[str]:
    return ["--datadir", str(datadir), "--basedir", str(basedir), "--expname", expname, "--n_iters", str(N_ITERS),
            "--upsamp_list", "1000", "--update_AlphaMask_list", "1000", *TINY_TRAIN, *extra]


def keypoint_targets(cfg, data) -> KeypointTargets:
    """The run's keypoint depth targets over ``data`` (its rays, normalization and std maps)."""
    return KeypointTargets(depth_target_options(cfg), data, data.cache.std)


@torch.no_grad()
def keypoint_depth_error(ckpt: Path, cfg) -> float:
    """Weighted mean |rendered static depth - target| (NDC t) over the run's COLMAP keypoint rays."""
    model, norm, _ = load_model(ckpt)
    data = VideoDataset(data_options(cfg), normalization=norm)
    sup = keypoint_targets(cfg, data)
    out = model(RayBatch(sup.origins, sup.dirs), ray_dynamic=torch.zeros(len(sup.t), dtype=torch.bool))
    return float((sup.weight * (out.static_depth - sup.t).abs()).sum() / sup.weight.sum())


@pytest.mark.slow
def test_sfm_colmap_depth_train_end_to_end(sfm_scene: Path, tmp_path: Path):
    rig = load_poses_bounds(SceneDir(sfm_scene).poses)
    assert rig.names == tuple(f"cam{k:02d}" for k in range(SFM_SCENE["n_cams"]))  # all registered
    table = np.load(SceneDir(sfm_scene).sparse_depth)
    assert set(table["cam_index"].tolist()) == set(range(SFM_SCENE["n_cams"]))

    proc = subprocess.run([sys.executable, "train.py", *_train_argv(sfm_scene, tmp_path, "depth", DEPTH_ARGS)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"trained {N_ITERS} iterations" in proc.stdout
    assert "COLMAP depth:" in proc.stderr and "keypoints on static pixels" in proc.stderr
    history = json.loads((tmp_path / "depth" / "history.json").read_text())
    depth_terms = [terms.get("depth") for terms in history["loss_terms"]]
    assert len(depth_terms) == N_ITERS and all(v is not None and v > 0 for v in depth_terms)

    base_cfg = tiny_config(sfm_scene, tmp_path, "no_depth", n_iters=N_ITERS, upsamp_list=(1000,),
                           alpha_mask_list=(1000,), extra=["--depth_source", "none"])
    base = Trainer(base_cfg)
    base_ckpt = base.fit()
    assert all("depth" not in terms for terms in base.history["loss_terms"])

    cfg = tiny_config(sfm_scene, tmp_path, "measure", extra=DEPTH_ARGS)
    with_depth = keypoint_depth_error(tmp_path / "depth" / "ckpt.pt", cfg)
    without = keypoint_depth_error(base_ckpt, cfg)
    assert with_depth < 0.8 * without, (with_depth, without)


# ----------------------------------------------------------------------------- GT-posed keypoint tables

def _pixel_classes(scene: Path, cam: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(depth at frame 0 [H, W], static [H, W], dynamic [H, W]) from the generator's ground truth:
    static = depth and colour constant over all frames; dynamic = depth changes by > 1% and the
    colour's temporal std (mean over channels) is at least twice the training threshold."""
    depth = np.load(SceneDir(scene).gt_depth(cam))
    frames = np.stack([read_png(p) for p in sorted((SceneDir(scene).frames / cam).glob("*.png"))])
    static = (np.ptp(depth, axis=0) == 0) & np.all(frames == frames[:1], axis=(0, 3))
    std = (frames / 255.0).std(axis=0).mean(axis=-1)
    dynamic = (np.ptp(depth, axis=0) > 0.01 * depth.min(axis=0)) & (std > 2 * STD_THRESHOLD)
    return depth[0].astype(np.float64), static, dynamic


def _hand_ndc_t(rig, norm, k: int, xy: np.ndarray, z: np.ndarray) -> np.ndarray:
    """NDC t = 1 + 1/Z of the 3D points at camera-z ``z`` through pixels ``xy`` of camera k, by hand."""
    h, w, f = rig.hwf
    right, up, back, centre = rig.c2w[k].T
    rays = (xy[:, :1] - w / 2) / f * right - (xy[:, 1:] - h / 2) / f * up - back  # camera-z = -1
    points = centre + z[:, None] * rays
    z_norm = (norm.scale * (points - norm.avg[:, 3]) @ norm.avg[:, :3])[:, 2]
    return 1 + 1 / z_norm


def _gt_table(scene: Path, rig, cams: list[str], names: list[str] | None = None) -> tuple[dict, list]:
    """colmap_depth.npz content from gt_depth at every static and dynamic pixel of ``cams`` (frame 0)."""
    names = names or list(rig.names)
    h, w = int(rig.hwf[0]), int(rig.hwf[1])
    cols, rows = [], []
    for cam in cams:
        depth, static, dynamic = _pixel_classes(scene, cam)
        j, i = np.nonzero(static | dynamic)
        rows.append({"cam": cam, "xy": np.stack([i + 0.5, j + 0.5], -1), "z": depth[j, i],
                     "static": static[j, i]})
        cols.append(len(j))
    rng = np.random.default_rng(0)
    err = np.concatenate([rng.uniform(0.2, 1.5, n) for n in cols])
    table = {"cam_index": np.concatenate([np.full(n, names.index(r["cam"])) for r, n in zip(rows, cols)]),
             "x": np.concatenate([r["xy"][:, 0] for r in rows]), "y": np.concatenate([r["xy"][:, 1] for r in rows]),
             "depth": np.concatenate([r["z"] for r in rows]), "weight": 2 * np.exp(-((err / err.mean()) ** 2)),
             "reproj_error": err, "cam_names": np.array(names), "hw": np.array([h, w])}
    table = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in table.items()}
    # the world of the table: the rig's pose of each named camera (an unknown name gets the first pose)
    table["c2w"] = np.stack([rig.c2w[list(rig.names).index(n) if n in rig.names else 0] for n in names])
    return table, rows


def test_sparse_depth_targets_are_hand_computed_ndc_t(scene_copy: Path, tmp_path: Path):
    cfg = tiny_config(scene_copy, tmp_path, "sparse", extra=DEPTH_ARGS)
    data = VideoDataset(data_options(cfg))
    rig, norm = data.rig, data.normalization
    assert norm.ndc and data.test_idx == [0] and cfg.temporal_variance_threshold == STD_THRESHOLD
    table, rows = _gt_table(scene_copy, rig, list(rig.names))  # every camera, cam00 (test) included
    save_depth_table(SceneDir(scene_copy).sparse_depth, table)
    sup = keypoint_targets(cfg, data)

    train = [r for r in rows if r["cam"] != "cam00"]
    assert all(r["static"].any() and (~r["static"]).any() for r in train)  # both kinds are offered
    expected_t = np.concatenate([_hand_ndc_t(rig, norm, rig.names.index(r["cam"]), r["xy"][r["static"]],
                                             r["z"][r["static"]].astype(np.float32)) for r in train])
    # only the training cameras' static keypoints, in camera then file order
    assert len(sup.t) == len(expected_t)
    np.testing.assert_allclose(sup.t.numpy(), expected_t, rtol=0, atol=2e-5)
    assert np.all((expected_t > 0) & (expected_t < 1))
    kept = (table["cam_index"] != 0) & np.concatenate([r["static"] for r in rows])
    np.testing.assert_allclose(sup.weight.numpy(), table["weight"][kept], rtol=1e-6)
    # the ray really passes through the point: NDC point o + t d has NDC z = 1 + 2/Z = 2t - 1
    ndc_z = (sup.origins + sup.t[:, None] * sup.dirs)[:, 2].numpy()
    np.testing.assert_allclose(ndc_z, 2 * expected_t - 1, atol=5e-5)


def test_sparse_depth_uses_no_test_camera_keypoints(scene_copy: Path, tmp_path: Path):
    cfg = tiny_config(scene_copy, tmp_path, "sparse_test_cam", extra=DEPTH_ARGS)
    data = VideoDataset(data_options(cfg))
    table, _ = _gt_table(scene_copy, data.rig, ["cam00"])
    save_depth_table(SceneDir(scene_copy).sparse_depth, table)
    with pytest.raises(UserError, match="no keypoints on static pixels of the training cameras"):
        keypoint_targets(cfg, data)


def test_sparse_depth_drops_dynamic_keypoints(scene_copy: Path, tmp_path: Path):
    cfg = tiny_config(scene_copy, tmp_path, "sparse_dynamic", extra=DEPTH_ARGS)
    data = VideoDataset(data_options(cfg))
    table, rows = _gt_table(scene_copy, data.rig, ["cam01", "cam02"])
    keep_static = np.concatenate([r["static"] for r in rows])
    dyn = {k: v[~keep_static] if v.ndim == 1 and len(v) == len(keep_static) else v for k, v in table.items()}
    assert len(dyn["depth"]) > 10
    save_depth_table(SceneDir(scene_copy).sparse_depth, dyn)  # only keypoints on moving content
    with pytest.raises(UserError, match="no keypoints on static pixels"):
        keypoint_targets(cfg, data)
    save_depth_table(SceneDir(scene_copy).sparse_depth, table)
    assert len(keypoint_targets(cfg, data).t) == keep_static.sum()


def test_sparse_depth_refuses_unknown_cameras(scene_copy: Path, tmp_path: Path):
    cfg = tiny_config(scene_copy, tmp_path, "sparse_unknown", extra=DEPTH_ARGS)
    data = VideoDataset(data_options(cfg))
    names = [*data.rig.names, "cam99"]
    table, _ = _gt_table(scene_copy, data.rig, ["cam01"], names)
    table["cam_index"][:5] = names.index("cam99")
    save_depth_table(SceneDir(scene_copy).sparse_depth, table)
    with pytest.raises(UserError, match=r"colmap_depth.npz: cameras \['cam99'\] are not in the scene"):
        keypoint_targets(cfg, data)


def test_sparse_depth_rescales_keypoints_of_another_resolution(scene_copy: Path, tmp_path: Path):
    """A table written at 2x the training size (SfM on full-size frames) gives the same targets."""
    cfg = tiny_config(scene_copy, tmp_path, "sparse_scale", extra=DEPTH_ARGS)
    data = VideoDataset(data_options(cfg))
    table, _ = _gt_table(scene_copy, data.rig, ["cam01", "cam03"])
    save_depth_table(SceneDir(scene_copy).sparse_depth, table)
    t_same = keypoint_targets(cfg, data).t
    big = dict(table, x=table["x"] * 2, y=table["y"] * 2, hw=table["hw"] * 2)
    shutil.move(SceneDir(scene_copy).sparse_depth, tmp_path / "orig.npz")
    save_depth_table(SceneDir(scene_copy).sparse_depth, big)
    np.testing.assert_allclose(keypoint_targets(cfg, data).t, t_same, atol=1e-6)


# ----------------------------------------------------------------------------- bad input, nothing overwritten

def _snapshot(scene: Path) -> dict[str, bytes]:
    files = [SceneDir(scene).poses, scene / "poses_bounds_cams.txt", SceneDir(scene).sparse_depth,
             *sorted(SceneDir(scene).sparse_model.glob("*"))]
    return {str(p.relative_to(scene)): p.read_bytes() for p in files if p.is_file()}


@pytest.fixture
def posed_copy(sfm_scene: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "posed"
    shutil.copytree(sfm_scene, dst, ignore=shutil.ignore_patterns("cache"))
    return dst


def _run_script(script: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1
    return lines[0]


@pytest.mark.slow
def test_unregistered_camera_is_named_and_nothing_is_overwritten(posed_copy: Path):
    from PIL import Image

    before = _snapshot(posed_copy)
    (SceneDir(posed_copy).frames / "cam05").mkdir()
    Image.new("RGB", (SFM_SCENE["width"], SFM_SCENE["height"]), (128, 128, 128)).save(
        SceneDir(posed_copy).frames / "cam05" / "0000.png")  # featureless: SIFT finds nothing
    line = _one_error_line(_run_script("imgs2poses.py", posed_copy, "--overwrite", 1))
    assert line.endswith("registered 5 of 6 images with seeds [0, 1, 2, 3]; not registered: cam05.png "
                         "(0 verified matches)")
    assert _snapshot(posed_copy) == before


def test_empty_or_missing_model_is_refused_and_nothing_is_overwritten(posed_copy: Path, tmp_path: Path):
    import pycolmap

    before = _snapshot(posed_copy)
    empty = tmp_path / "empty_model"
    empty.mkdir()
    pycolmap.Reconstruction().write(empty)
    with pytest.raises(UserError, match="empty_model: empty COLMAP model"):
        imgs2poses.main([str(posed_copy), "--sparse_dir", str(empty), "--overwrite", "1"])
    with pytest.raises(UserError, match="empty_model: empty COLMAP model"):
        colmap2depth.main([str(posed_copy), "--sparse_dir", str(empty), "--overwrite", "1"])
    line = _one_error_line(_run_script("colmap2depth.py", posed_copy, "--sparse_dir", tmp_path / "nope",
                                       "--overwrite", 1))
    assert line == f"error: {tmp_path / 'nope'}: COLMAP model folder not found"
    assert _snapshot(posed_copy) == before


def test_poses_file_of_other_cameras_or_world_is_refused(posed_copy: Path):
    before = _snapshot(posed_copy)
    cams = posed_copy / "poses_bounds_cams.txt"
    cams.write_text(cams.read_text().replace("cam03", "cam07"))
    with pytest.raises(UserError, match=r"camera\(s\) cam07; the model's images are cam00.png, "):
        colmap2depth.main([str(posed_copy), "--overwrite", "1"])
    cams.write_text("cam00\ncam01\n")
    with pytest.raises(UserError, match="lists 2 cameras but poses_bounds.npy has 5 rows"):
        colmap2depth.main([str(posed_copy), "--overwrite", "1"])
    cams.write_bytes(before["poses_bounds_cams.txt"])
    write_scene(posed_copy.parent / "gt", **dict(SFM_SCENE, n_frames=1, width=32, height=24))
    shutil.copy(SceneDir(posed_copy.parent / "gt").poses, SceneDir(posed_copy).poses)  # GT world
    with pytest.raises(UserError, match=r"not the same world\) for camera\(s\) cam00 .*cam04 "):
        colmap2depth.main([str(posed_copy), "--overwrite", "1"])
    assert SceneDir(posed_copy).sparse_depth.read_bytes() == before["colmap_depth.npz"]

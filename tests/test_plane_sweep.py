"""Plane-sweep depth of the videos' medians (engine.plane_sweep, video2depth.py): by hand, on an analytic
textured plane, and the stage end to end on a small synthetic scene."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_static_depth import assert_one_error_line, run_cli

import video2depth
from bench.plane_sweep_speed import plane_images
from dataLoader.depth_files import load_dense_depth
from dataLoader.poses import load_poses_bounds, look_at
from dataLoader.scene_layout import SceneDir
from engine import options
from engine.option_groups import data_options
from engine.plane_sweep import (
    SweepOptions,
    best_plane,
    fill_holes,
    spread,
    sweep_depth,
    window_step,
    window_variance,
    zncc,
)
from synthetic.scene import write_scene


def test_zncc_by_hand():
    ref = torch.tensor([[0.0, 1.0, 0.0], [1.0, 2.0, 1.0], [0.0, 1.0, 0.0]])
    other = torch.stack([2 * ref + 0.5, -ref, torch.ones(3, 3)])
    score = zncc(ref, other, 3)
    # the centre window is the whole image: an affine copy correlates 1, a negated one -1, a flat one 0
    assert score[0, 1, 1].item() == pytest.approx(1.0, abs=1e-5)
    assert score[1, 1, 1].item() == pytest.approx(-1.0, abs=1e-5)
    assert score[2, 1, 1].item() == pytest.approx(0.0, abs=1e-5)
    mean = ref.mean()
    assert window_variance(ref[None], 3)[0, 1, 1].item() == pytest.approx(float(((ref - mean) ** 2).mean()), abs=1e-6)


def test_best_plane_refines_a_parabola_exactly():
    inv = torch.linspace(1.0, 0.1, 10)  # inverse depths, uniform
    peak = 0.43  # between planes 6 (0.4) and 5 (0.5)
    scores = (1 - (inv - peak) ** 2)[:, None, None].expand(10, 2, 2)
    depth, best = best_plane(scores, inv)
    torch.testing.assert_close(depth, torch.full((2, 2), 1 / peak))
    assert best.max().item() == pytest.approx(1 - (0.4 - peak) ** 2)


def test_window_step_by_hand():
    depth = torch.tensor([[1.0, 1.0, 1.0, 4.0], [1.0, 1.1, 1.0, 1.0], [1.0, 1.0, 9.0, 1.0]])
    valid = torch.ones(3, 4, dtype=torch.bool)
    valid[2, 2] = False  # an unmatched pixel: its depth is ignored
    step = window_step(depth, valid, 3)
    assert step[1, 0].item() == pytest.approx(0.1)  # window rows 0-2, cols 0-1: 1 .. 1.1
    assert step[1, 1].item() == pytest.approx(0.1)  # 4.0 is outside its window; 9.0 is not valid
    assert step[1, 2].item() == pytest.approx(3.0)  # 1 .. 4
    assert step[2, 2].item() == float("inf")


def test_spread_takes_the_smallest_window_holding_a_kept_pixel():
    values = torch.tensor([[1.0, 0, 0, 0, 0, 0, 3.0]])
    valid = values > 0
    out, reached = spread(values, valid)
    # side 3 reaches columns 1 and 5; side 7 the rest: column 3 sees both kept pixels, 2 and 4 one each
    torch.testing.assert_close(out, torch.tensor([[1.0, 1.0, 1.0, 2.0, 3.0, 3.0, 3.0]]))
    assert bool(reached.all())
    _, none = spread(torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.bool))
    assert not none.any()


def test_fill_holes_picks_the_match_near_its_neighbours():
    """A repeating texture scores two planes; a pixel left out takes the one next to its kept neighbours'
    depth, even where the other scores higher. It stays out where nothing nearby reaches the score."""
    inv = torch.linspace(1.0, 0.1, 10)
    top = torch.full((10, 1, 3), -0.2)
    top[4, 0, 0] = 0.9  # column 0: kept at plane 4
    top[5, 0, 1], top[9, 0, 1] = 0.6, 0.95  # column 1: a repeat at plane 9 scores higher
    top[8, 0, 2] = 0.95  # column 2: only the far repeat
    depth = torch.tensor([[1 / inv[4].item(), 0.0, 0.0]])
    keep = torch.tensor([[True, False, False]])
    opts = SweepOptions(fill_planes=3, fill_min_score=0.5, max_step=0)
    filled, kept = fill_holes(top, inv, depth, keep, torch.ones(1, 3, dtype=torch.bool), opts)
    assert kept.tolist() == [[True, True, False]]
    assert filled[0, 0].item() == pytest.approx(1 / inv[4].item())
    # plane 5's parabola through -0.2, 0.6, -0.2 peaks at plane 5 itself
    assert filled[0, 1].item() == pytest.approx(1 / inv[5].item())


def test_sweep_finds_a_textured_plane_and_the_filter_keeps_it():
    hw, focal, z_plane = (48, 64), 60.0, 4.0
    c2w = np.stack([look_at((x, y, 0.0), (x, y, -1.0)) for x, y in [(-0.3, 0), (0, 0.1), (0.3, 0), (0, -0.2)]])
    grey = plane_images(c2w, hw, focal, z_plane)
    bounds = np.tile([2.0, 8.0], (4, 1))
    depth, mask, report = sweep_depth(grey, c2w, bounds, focal, SweepOptions(n_planes=64))
    assert mask.mean() > 0.6
    err = np.abs(depth[mask] - z_plane) / z_plane
    assert np.median(err) < 0.005 and err.max() < 0.03
    assert np.all(depth[~mask] == 0) and np.all(report.error < 0.01)


def test_sweep_keeps_nothing_on_a_textureless_rig():
    c2w = np.stack([look_at((x, 0.0, 0.0), (x, 0.0, -1.0)) for x in (-0.3, 0.0, 0.3)])
    depth, mask, _ = sweep_depth(torch.full((3, 24, 32), 0.5), c2w, np.tile([2.0, 8.0], (3, 1)), 30.0)
    assert not mask.any() and np.all(depth == 0)


@pytest.fixture(scope="module")
def detailed_scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep") / "scene"
    write_scene(root, n_cams=4, n_frames=4, width=64, height=48, n_static_views=0, supersample=2, video=False,
                texture="detailed")
    return root


def test_video2depth_matches_the_static_scene_and_never_overwrites(detailed_scene, tmp_path, capsys):
    out = tmp_path / "video_depth.npz"
    argv = ["--datadir", str(detailed_scene), "--depthmap_npy_path", str(out)]
    code, lines, err = run_cli(video2depth.main, argv, capsys)
    assert code == 0 and len(lines) == 1 and "3 cameras (cam01, cam02, cam03) 64x48" in lines[0], (lines, err)
    d = load_dense_depth(out)
    rig = load_poses_bounds(SceneDir(detailed_scene).poses)
    np.testing.assert_allclose(d.c2w, rig.c2w[1:])
    assert d.hw == (48, 64) and np.array_equal(d.weight, d.mask.astype(np.float32))
    background = np.stack([np.load(SceneDir(detailed_scene).gt_depth(c)).max(0) for c in d.cam_names])
    err = np.abs(d.depth - background)[d.mask] / background[d.mask]
    assert d.mask.mean() > 0.05 and np.median(err) < 0.01 and np.percentile(err, 90) < 0.03
    stamp = out.read_bytes()
    code, _, err = run_cli(video2depth.main, argv, capsys)
    assert_one_error_line(code, err, str(out), "--overwrite 1")
    assert out.read_bytes() == stamp
    code, _, err = run_cli(video2depth.main, [*argv, "--overwrite", "1", "--test_cams", "0", "1", "2"], capsys)
    assert_one_error_line(code, err, "at least two training cameras")
    code, _, err = run_cli(video2depth.main, [*argv, "--overwrite", "1", "--window", "4"], capsys)
    assert_one_error_line(code, err, "--window 4")
    assert out.read_bytes() == stamp


def test_video_mvs_overlay_trains_on_the_maps(detailed_scene, tmp_path, capsys):
    assert run_cli(video2depth.main, ["--datadir", str(detailed_scene), "--overwrite", "1"], capsys)[0] == 0
    cfg = options.resolve(options.parse(["--datadir", str(detailed_scene),
                                         "--depth_config", "configs/depth/video_mvs.txt"]))
    assert cfg.depth_source == "video_mvs" and cfg.depth_lambda == 1.0
    from dataLoader.dataset import VideoDataset
    data = VideoDataset(data_options(cfg, with_depth=True))
    mask = load_dense_depth(SceneDir(detailed_scene).resolve("depth/video_depth.npz")).mask
    assert data.dense_depth is not None
    assert int((data.dense_depth.weight > 0).sum()) == int(mask.sum())


FIXTURE = Path(__file__).resolve().parents[2] / "shared/data/n3dv_flame_steak_5cam"


@pytest.mark.skipif(not (FIXTURE / "sparse" / "0").is_dir(), reason=f"real COLMAP fixture not found at {FIXTURE}")
def test_video2depth_on_real_n3dv_frames_agrees_with_colmap_points(tmp_path, capsys):
    """Five real N3DV views (one instant, 676x507) posed by their COLMAP model: wherever the sweep keeps depth
    (at 1/16 of the model's 2694x2020), it agrees with the model's triangulated points seen by that camera."""
    import pycolmap

    import imgs2poses
    from engine.depth_consistency import project

    scene = tmp_path / "scene"
    shutil.copytree(FIXTURE / "images_4", scene / "images")
    imgs2poses.main([str(scene), "--sparse_dir", str(FIXTURE / "sparse" / "0")])
    stems = (scene / "poses_bounds_cams.txt").read_text().split()  # rows in the numeric order 0 3 5 8 14
    names = [f"cam{i:02d}" for i in range(len(stems))]  # frame folders must sort as the rows do
    for stem, name in zip(stems, names):
        (scene / "frames" / name).mkdir(parents=True)
        shutil.copy(scene / "images" / f"{stem}.png", scene / "frames" / name / "0000.png")
    (scene / "poses_bounds_cams.txt").write_text("\n".join(names) + "\n")
    code, lines, err = run_cli(video2depth.main, ["--datadir", str(scene), "--downsample", "16", "--test_cams"],
                               capsys)
    assert code == 0, err
    d = load_dense_depth(SceneDir(scene).resolve("depth/video_depth.npz"))
    rig = load_poses_bounds(SceneDir(scene).poses)
    focal = rig.hwf[2] * d.hw[1] / rig.hwf[1]
    rec = pycolmap.Reconstruction(FIXTURE / "sparse" / "0")
    image_id = {im.name: i for i, im in rec.images.items()}
    errors = []
    for k, stem in enumerate(stems):
        iid = image_id[f"{stem}.jpg"]
        xyz = np.array([p.xyz for p in rec.points3D.values() if any(e.image_id == iid for e in p.track.elements)])
        x, y, z = project(xyz, d.c2w[k], focal, d.hw)
        col, row = np.floor(x).astype(int), np.floor(y).astype(int)
        inside = (col >= 0) & (col < d.hw[1]) & (row >= 0) & (row < d.hw[0]) & (z > 0)
        col, row, z = col[inside], row[inside], z[inside]
        kept = d.mask[k, row, col]
        errors.append(np.abs(d.depth[k, row, col][kept] - z[kept]) / z[kept])
    err = np.concatenate(errors)
    assert len(err) > 500 and np.median(err) < 0.02 and np.percentile(err, 90) < 0.05

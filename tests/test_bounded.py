"""Bounded (non-NDC) scenes: ray/aabb cases, metric depth, NDC/bounded choice, scene box, visibility mask,
depth supervision in metric rays, the orbit path, and a tiny bounded training run on the inward rig."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from dataLoader.dataset import DataOptions, VideoDataset
from dataLoader.depth_files import DenseDepth, save_dense_depth, save_depth_table
from dataLoader.depth_space import camera_z_to_ray_param, ray_param_to_camera_z
from dataLoader.poses import CameraRig, SceneNormalization
from dataLoader.rays import camera_rays, pixel_directions
from dataLoader.rig_geometry import bounded_box, view_spread_deg
from dataLoader.scene_layout import SceneDir
from engine.evaluation.evaluate import evaluate_camera
from engine.option_groups import data_options
from engine.render.camera_paths import convergence_point, look_at, make_path
from engine.render.frames import render_pose
from engine.train.trainer import Trainer
from models import volume_rendering as vr
from models.mixvoxels import MixVoxels, ModelConfig
from models.types import RayBatch
from models.visibility import seen_grid
from synthetic.scene import write_scene
from tests.conftest import tiny_config

INWARD = dict(rig="inward", n_cams=9, n_frames=3, width=32, height=24, n_static_views=0, supersample=1, video=False)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def inward_scene(tmp_path_factory) -> Path:
    """9 cameras on a 120 degree arc (0, +-15, ..., +-60 deg) looking at the room's centre; cam00 = test."""
    root = tmp_path_factory.mktemp("inward") / "scene"
    write_scene(root, **INWARD)
    return root


def world_points(rig: CameraRig, k: int, xy: np.ndarray, z: np.ndarray) -> np.ndarray:
    """World points [M, 3] at camera-z ``z`` through pixel coordinates xy [M, 2] of camera k."""
    h, w, f = rig.hwf
    dirs = pixel_directions(int(h), int(w), f, torch.from_numpy(xy)).numpy() @ rig.c2w[k, :, :3].T
    return rig.c2w[k, :, 3] + z[:, None] * dirs


def to_norm(norm: SceneNormalization, pts: np.ndarray) -> np.ndarray:
    return norm.scale * (pts - norm.avg[:, 3]) @ norm.avg[:, :3]


# ----------------------------------------------------------------------------- ray / aabb
def test_ray_aabb_parallel_rays_and_faces_of_an_off_centre_box():
    box = torch.tensor([[1.0, -2.0, 0.0], [3.0, 2.0, 5.0]])
    origins = torch.tensor([[0.0, 0.0, 2.0],    # along +x: in at x = 1, out at x = 3
                            [0.0, 3.0, 2.0],    # parallel to the y slab, outside it: miss
                            [2.0, 0.0, -1.0],   # along +z through the bottom face, out at the top
                            [0.0, 0.0, 0.0],    # diagonal (1, 1, 1): in through x = 1, out through y = 2
                            [2.0, 0.0, 2.0]])   # inside, looking down -y: out at y = -2
    dirs = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.5], [1.0, 1.0, 1.0], [0.0, -1.0, 0.0]])
    near, far, hit = vr.ray_aabb_intersect(origins, dirs, box)
    assert hit.tolist() == [True, False, True, True, True]
    torch.testing.assert_close(near[hit], torch.tensor([1.0, 2.0, 1.0, 0.0]))
    torch.testing.assert_close(far[hit], torch.tensor([3.0, 12.0, 2.0, 2.0]))


def test_ray_aabb_inside_but_min_near_beyond_the_exit_is_a_miss():
    near, far, hit = vr.ray_aabb_intersect(torch.tensor([[0.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, 1.0]]),
                                           torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]), min_near=1.5)
    assert not hit.item() and near.item() == far.item() == 1.5


# ----------------------------------------------------------------------------- metric depth
def rotated_rig() -> CameraRig:
    """Three parallel cameras (rotated 30 deg about y, then tilted), world units, near 2 far 10."""
    a, b = np.radians(30.0), np.radians(-10.0)
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rot = ry @ rx
    centres = [np.array([1.0, 0.3, 5.0]) + s * rot[:, 0] for s in (-1.0, 0.0, 1.0)]
    c2w = np.stack([np.concatenate([rot, c[:, None]], 1) for c in centres])
    return CameraRig(c2w, (24.0, 32.0, 30.0), np.array([[2.0, 10.0]] * 3))


def test_metric_depth_round_trip_world_z_to_t_and_back():
    rig = rotated_rig()
    norm = SceneNormalization.from_rig(rig, [[-3, -3, -4], [3, 3, 0]], ndc=False)
    xy = np.random.default_rng(0).uniform([0, 0], [32, 24], (50, 2))
    z = np.random.default_rng(1).uniform(2.0, 10.0, 50)
    o, d = camera_rays(torch.as_tensor(norm.apply(rig.c2w)[2]), pixel_directions(24, 32, 30.0, torch.from_numpy(xy)))
    t = camera_z_to_ray_param(torch.from_numpy(z), o, d, norm)
    np.testing.assert_allclose(t.numpy(), z * norm.scale, rtol=1e-12)  # metric t = normalized camera z
    np.testing.assert_allclose(ray_param_to_camera_z(t, o, d, norm).numpy(), z, rtol=1e-12)
    # o + t d is the world point, normalized
    np.testing.assert_allclose((o + t[:, None] * d).numpy(), to_norm(norm, world_points(rig, 2, xy, z)), atol=1e-9)


def test_rendered_depth_of_a_density_plane_is_its_world_distance():
    """Opaque half-space beyond a plane at normalized z = z_p, cameras looking straight at it: the rendered
    depth (world-unit camera z) is the plane's distance / scale, whatever the rig's rotation and scale."""
    rig = rotated_rig()
    box = [[-3.0, -3.0, -4.0], [3.0, 3.0, 0.0]]
    norm = SceneNormalization.from_rig(rig, box, ndc=False)
    cfg = ModelConfig(n_frames=1, static_only=True, ndc=False, near_far=(0.1, float("inf")),
                      n_lamb_sigma=(1, 1, 1), n_lamb_sh=(1, 1, 1), app_dim=4, static_featureC=8, step_ratio=0.1)
    model = MixVoxels(cfg, box, [8, 8, 201])
    i0 = 120  # density = 1000 for z index <= i0, ramping to 0 at i0 + 1
    with torch.no_grad():
        for p in model.density.grid_parameters():
            p.zero_()
        model.density.planes[0].fill_(1.0)
        model.density.lines[0][0, 0, :i0 + 1, 0] = 1000.0
    z_plane = -4.0 + 4.0 * (i0 + 1) / 200
    c2w = norm.apply(rig.c2w)
    for k in range(3):
        render = render_pose(model, c2w[k], 24, 32, 30.0, norm, CPU)
        expected = (c2w[k, 2, 3] - z_plane) / norm.scale  # camera axes = normalized axes here
        assert render.acc.min() > 0.999
        np.testing.assert_allclose(render.static_depth, expected, rtol=4e-3)
        np.testing.assert_allclose(render.depth[0], expected, rtol=4e-3)


# ----------------------------------------------------------------------------- NDC or bounded
def test_rig_kind_is_detected_and_explicit_ndc_ray_wins(tiny_scene, inward_scene, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="dataLoader.dataset"):
        fwd = VideoDataset(DataOptions(tiny_scene))
        inward = VideoDataset(DataOptions(inward_scene))
    assert fwd.normalization.ndc and fwd.near_far == (0.0, 1.0)
    assert view_spread_deg(fwd.rig.c2w) < 30 < view_spread_deg(inward.rig.c2w)
    assert not inward.normalization.ndc and inward.near_far[1] == float("inf")
    assert "forward-facing NDC" in caplog.text and "bounded metric" in caplog.text
    assert not VideoDataset(DataOptions(tiny_scene, ndc=False)).normalization.ndc
    assert VideoDataset(DataOptions(inward_scene, ndc=True)).normalization.ndc
    for flag, want in ((-1, False), (0, False), (1, True)):  # the config key: -1 = from the rig
        cfg = tiny_config(inward_scene, tmp_path, "x", extra=["--ndc_ray", str(flag)])
        assert VideoDataset(data_options(cfg)).normalization.ndc is want


def test_ndc_rays_are_sampled_over_the_box_z_range(tiny_scene):
    # NDC rays run z = -1 + 2 t: a box from z = -0.5 to 0.8 is sampled for t in [0.25, 0.9]; a box beyond
    # z = +-1 (the N3DV configs' 1.5) still samples [0, 1].
    assert VideoDataset(DataOptions(tiny_scene, scene_box=(-1.5, -1.5, -0.5, 1.5, 1.5, 0.8))).near_far == (0.25, 0.9)
    assert VideoDataset(DataOptions(tiny_scene, scene_box=(-3.0, -3.0, -1.5))).near_far == (0.0, 1.0)


def gt_table(scene: Path, rig, cams) -> dict:
    """colmap_depth.npz content: every 3rd pixel of frame 0 of ``cams`` at its ground-truth depth."""
    h, w = int(rig.hwf[0]), int(rig.hwf[1])
    j, i = np.mgrid[0:h:3, 0:w:3].reshape(2, -1)
    rows = [(rig.names.index(c), np.load(SceneDir(scene).gt_depth(c))[0][j, i]) for c in cams]
    n = len(j)
    return {"cam_index": np.concatenate([np.full(n, k) for k, _ in rows]).astype(np.int32),
            "x": np.tile(i + 0.5, len(rows)).astype(np.float32), "y": np.tile(j + 0.5, len(rows)).astype(np.float32),
            "depth": np.concatenate([z for _, z in rows]).astype(np.float32),
            "weight": np.ones(n * len(rows), np.float32), "reproj_error": np.full(n * len(rows), 0.5, np.float32),
            "cam_names": np.array(list(rig.names)), "hw": np.array([h, w], np.int32), "c2w": rig.c2w}


def test_scene_box_from_sparse_points_then_frusta_and_the_config_override_wins(inward_scene, tmp_path, caplog):
    import shutil
    scene = tmp_path / "scene"
    shutil.copytree(inward_scene, scene, ignore=shutil.ignore_patterns("cache"))
    frusta = VideoDataset(DataOptions(scene))
    unit = SceneNormalization.from_rig(frusta.rig, np.zeros((2, 3)), ndc=False)
    np.testing.assert_allclose(frusta.normalization.aabb, bounded_box(frusta.rig, unit))
    rig = frusta.rig
    save_depth_table(SceneDir(scene).sparse_depth, gt_table(scene, rig, list(rig.names)))
    with caplog.at_level(logging.INFO, logger="dataLoader.dataset"):
        pts = VideoDataset(DataOptions(scene))
    assert "sparse points of" in caplog.text
    box = np.asarray(pts.normalization.aabb)
    centres = unit.apply(rig.c2w)[:, :, 3]
    assert np.all(box[0] <= centres.min(0)) and np.all(box[1] >= centres.max(0))
    room = [to_norm(unit, world_points(rig, k, *_frame0(scene, rig, k))) for k in range(len(rig))]
    inner = np.percentile(np.concatenate(room), [5, 95], axis=0)
    assert np.all(box[0] <= inner[0]) and np.all(box[1] >= inner[1])
    fbox = np.asarray(frusta.normalization.aabb)
    assert np.prod(box[1] - box[0]) < 0.5 * np.prod(fbox[1] - fbox[0])  # much tighter than the frusta
    override = VideoDataset(DataOptions(scene, scene_box=(-1.0, -2.0, -3.0)))
    assert override.normalization.aabb == ((-1.0, -2.0, -3.0), (1.0, 2.0, 3.0))
    # a table of other cameras is skipped with a warning: back to the frusta
    bad = gt_table(scene, rig, ["cam01"])
    bad["cam_names"] = np.array(["cam01", "x", "y", "z", "w"])
    save_depth_table(SceneDir(scene).sparse_depth, bad)
    with caplog.at_level(logging.WARNING):
        again = VideoDataset(DataOptions(scene))
    assert "scene box: ignoring" in caplog.text
    np.testing.assert_allclose(again.normalization.aabb, frusta.normalization.aabb)


def _frame0(scene: Path, rig, k: int):
    z = np.load(SceneDir(scene).gt_depth(rig.names[k]))[0].astype(np.float64)
    j, i = np.mgrid[0:z.shape[0], 0:z.shape[1]].reshape(2, -1)
    return np.stack([i + 0.5, j + 0.5], -1), z[j, i]


# ----------------------------------------------------------------------------- visibility mask
def test_alpha_mask_of_a_bounded_model_drops_space_no_camera_sees():
    """A wall at z = -1 in front of cameras at z = 1: space behind it is occupied (random density) but
    hidden, so the mask drops it and the shrunk box ends at the wall."""
    cfg = ModelConfig(n_frames=1, static_only=True, ndc=False, near_far=(0.1, float("inf")),
                      n_lamb_sigma=(1, 1, 1), n_lamb_sh=(1, 1, 1), app_dim=4, static_featureC=8, step_ratio=0.5)
    model = MixVoxels(cfg, [[-2.0, -2.0, -3.0], [2.0, 2.0, 0.0]], [16, 16, 31])
    with torch.no_grad():
        for p in model.density.grid_parameters():
            p.zero_()
        model.density.planes[0].fill_(1.0)
        model.density.lines[0][0, 0, :21, 0] = 50.0  # z <= -1: solid
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(2000, 2, generator=g) * 2 - 1
    origins = torch.cat([xy, torch.ones(2000, 1)], 1)
    dirs = torch.cat([0.3 * torch.randn(2000, 2, generator=g), -torch.ones(2000, 1)], 1)
    seen = seen_grid(model, origins, dirs, model.resolution)
    occ = model.occupancy_grid(model.resolution)
    assert occ[:10].all() and not seen[:15].any()  # z index < 15 (z < -1.6): solid but hidden
    assert seen[22:].float().mean() > 0.3  # free space in front of the wall
    box = model.update_alpha_mask(model.resolution, seen)
    assert box[0, 2] > -1.6 and box[1, 2] < -0.5
    before = model(RayBatch(origins[:200], dirs[:200]))
    model.shrink(box)
    after = model(RayBatch(origins[:200], dirs[:200]))
    torch.testing.assert_close(after.static_depth, before.static_depth, atol=0.05, rtol=0)  # samples move


# ----------------------------------------------------------------------------- depth supervision, metric
def test_both_depth_sources_give_metric_ray_targets_through_the_gt_points(inward_scene, tmp_path):
    import shutil
    scene = tmp_path / "scene"
    shutil.copytree(inward_scene, scene, ignore=shutil.ignore_patterns("cache"))
    data0 = VideoDataset(DataOptions(scene))
    rig = data0.rig
    save_depth_table(SceneDir(scene).sparse_depth, gt_table(scene, rig, list(rig.names)))
    cams = list(rig.names)[1:]
    z = np.stack([np.load(SceneDir(scene).gt_depth(c))[0] for c in cams])
    save_dense_depth(SceneDir(scene).dense_depth, DenseDepth(
        z, np.ones_like(z, bool), np.ones_like(z), cams, z.shape[1:], rig.c2w[1:], {}))
    for extra in (["--depth_source", "colmap"], ["--depth_source", "static_model"]):
        cfg = tiny_config(scene, tmp_path, "d", extra=["--temporal_variance_threshold", "1.0",
                                                         *extra])
        data = VideoDataset(data_options(cfg, with_depth=True))
        assert not data.normalization.ndc
        if cfg.depth_source == "colmap":
            sup = data.keypoints
            origins, dirs = sup.origins, sup.dirs
            table = gt_table(scene, rig, cams)
            xy, zk = np.stack([table["x"], table["y"]], -1).astype(np.float64), table["depth"].astype(np.float64)
            cam = table["cam_index"]
            pts = np.concatenate([world_points(rig, k, xy[cam == k], zk[cam == k]) for k in range(1, len(rig))])
        else:
            sup = data.dense_depth
            origins, dirs = data.train_origins, data.train_dirs
            pts = np.concatenate([world_points(rig, k, *_frame0(scene, rig, k)) for k in data.train_idx])
        got = (origins.double() + sup.t.double()[:, None] * dirs.double()).numpy()
        np.testing.assert_allclose(got, to_norm(data.normalization, pts), atol=2e-4)


# ----------------------------------------------------------------------------- orbit path
def test_orbit_path_looks_at_where_the_inward_cameras_converge(inward_scene):
    data = VideoDataset(DataOptions(inward_scene))
    cams, norm = data.camera_table(), data.normalization
    centre = convergence_point(cams)
    np.testing.assert_allclose(norm.avg[:, :3] @ centre / norm.scale + norm.avg[:, 3], [0.0, -0.2, 0.0],
                               atol=1e-6)  # the generator's look-at target, in world units
    path = make_path("orbit", cams, n_views=24, frames=(0, 3))
    rot = path.c2w[:, :, :3]
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-9)  # like the training cameras
    np.testing.assert_allclose(np.einsum("nji,njk->nik", rot, rot), np.broadcast_to(np.eye(3), rot.shape), atol=1e-9)
    to_centre = centre - path.c2w[:, :, 3]
    np.testing.assert_allclose(np.einsum("ni,ni->n", -path.c2w[:, :, 2], to_centre),
                               np.linalg.norm(to_centre, axis=1), rtol=1e-9)  # looks straight at it
    # on the rig's camera ring (radius 6 at height 0.4 around the world y axis), sweeping its 120 degrees
    world = norm.unapply(path.c2w)[:, :, 3]
    np.testing.assert_allclose(world[:, 1], 0.4, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(world[:, [0, 2]], axis=1), 6.0, rtol=1e-6)
    az = np.degrees(np.arctan2(world[:, 0], world[:, 2]))
    assert az.min() == pytest.approx(-60.0, abs=1e-6) and az.max() == pytest.approx(60.0, abs=2.0)
    assert path.times.tolist() == [i % 3 for i in range(24)]
    # not mirrored: a point right of the centre as the nearest training camera sees it is right in the path too
    for c2w in path.c2w:
        near = data.c2w[np.argmin(np.linalg.norm(data.c2w[:, :, 3] - c2w[:, 3], axis=1))]
        point = centre + 0.3 * near[:, 0]
        for cam in (near, c2w):
            p = cam[:, :3].T @ (point - cam[:, 3])
            assert p[2] < 0 and p[0] > 0


def test_orbit_of_a_full_ring_goes_once_around():
    c2w = np.stack([look_at(np.array([3 * np.sin(a), 0.5, 3 * np.cos(a)]), np.zeros(3), np.array([0, 1.0, 0]))
                    for a in np.radians(np.arange(0, 360, 45))])
    np.testing.assert_allclose(convergence_point({"c2w": c2w}), [0, 0, 0], atol=1e-9)
    path = make_path("orbit", {"c2w": c2w}, n_views=8, frames=(0, 1))
    np.testing.assert_allclose(path.c2w[:, 1, 3], 0.5, atol=1e-9)
    az = np.sort(np.degrees(np.arctan2(path.c2w[:, 0, 3], path.c2w[:, 2, 3])) % 360)
    np.testing.assert_allclose(np.diff(az), 45.0, atol=1e-6)


# ----------------------------------------------------------------------------- tiny bounded training
def test_tiny_bounded_training_beats_the_mean_colour_on_the_test_camera(inward_scene, tmp_path):
    cfg = tiny_config(inward_scene, tmp_path, "inward", n_iters=200, upsamp_list=(100,), alpha_mask_list=(133,))
    trainer = Trainer(cfg)
    assert not trainer.model.cfg.ndc
    trainer.fit()
    metrics, ev = evaluate_camera(trainer.model.eval(), trainer.data, 0, CPU)
    gt = ev.gt
    train_rgb = np.stack([trainer.data.frames_of(k) for k in trainer.data.train_idx]).astype(np.float64) / 255
    mean = train_rgb.reshape(-1, 3).mean(0)
    baseline = -10 * np.log10(((gt / 255.0 - mean) ** 2).mean())  # predicting the mean training colour
    assert metrics["psnr"] > baseline + 3.0, (metrics["psnr"], baseline)
    assert ev.gt_depth is not None and metrics["depth"]["abs_rel"] < 0.4  # depth in world units, not t

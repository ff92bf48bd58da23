"""The embedded synthetic scene: layout, determinism, and depth/pose consistency."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import script_env

from core.errors import UserError
from dataLoader.depth_files import load_sparse_depth, save_depth_table
from dataLoader.poses import load_poses_bounds
from dataLoader.rays import pixel_directions
from dataLoader.scene_layout import SceneDir
from dataLoader.video_io import read_png, read_video, to_uint8
from synthetic.content import value_noise
from synthetic.keypoints import gt_keypoint_table
from synthetic.scene import (
    cast_rays,
    focal_from_fov,
    make_scene,
    render_view,
    video_cameras,
    write_scene,
)

TINY = dict(n_cams=3, n_frames=3, width=32, height=24, n_static_views=4, supersample=2, video=False)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Two scenes with seed 0 and one with seed 1, tiny sizes."""
    root = tmp_path_factory.mktemp("synthetic")
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        write_scene(root / name, seed=seed, **TINY)
    return root


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _reproject(depth_a, c2w_a, c2w_b, hwf):
    """Unproject every pixel of A with its camera-z depth [H, W]; project into B -> u, v, z_b: [H*W]."""
    h, w, f = int(hwf[0]), int(hwf[1]), hwf[2]
    dirs = pixel_directions(h, w, f).numpy()  # camera z = -1, so point = c + z * R @ dir
    pts = c2w_a[:, 3] + depth_a.reshape(-1, 1) * (dirs @ c2w_a[:, :3].T)
    cam = (pts - c2w_b[:, 3]) @ c2w_b[:, :3]
    z_b = -cam[:, 2]
    return f * cam[:, 0] / z_b + w / 2, -f * cam[:, 1] / z_b + h / 2, z_b


def _depth_at(depth, u, v):
    """Camera z of B at continuous pixel coords (bilinear in 1/z, exact on planes) -> [M]."""
    h, w = depth.shape
    x, y = np.clip(u - 0.5, 0, w - 1.001), np.clip(v - 0.5, 0, h - 1.001)
    x0, y0 = x.astype(int), y.astype(int)
    fx, fy, inv = x - x0, y - y0, 1.0 / depth
    bil = (inv[y0, x0] * (1 - fx) * (1 - fy) + inv[y0, x0 + 1] * fx * (1 - fy)
           + inv[y0 + 1, x0] * (1 - fx) * fy + inv[y0 + 1, x0 + 1] * fx * fy)
    return 1.0 / bil


def _check_consistent(depth_a, depth_b, c2w_a, c2w_b, hwf, min_exact=0.5):
    u, v, z_b = _reproject(depth_a.astype(np.float64), c2w_a, c2w_b, hwf)
    inside = (u >= 0) & (u < hwf[1]) & (v >= 0) & (v < hwf[0]) & (z_b > 0)
    assert inside.mean() > 0.5
    rel = np.abs(_depth_at(depth_b.astype(np.float64), u[inside], v[inside]) - z_b[inside]) / z_b[inside]
    # surface points seen by both cameras on a planar patch agree to float32 precision; the rest are
    # occlusions, silhouettes and curved surfaces
    assert (rel < 1e-5).mean() > min_exact
    assert np.median(rel) < 1e-3


def test_layout_and_shapes(scenes):
    d = scenes / "a"
    meta = json.loads((d / "meta.json").read_text())
    assert meta["cam_names"] == ["cam00", "cam01", "cam02"] and meta["static"]["moving_objects"] == "removed"
    for cam in meta["cam_names"]:
        assert sorted(p.name for p in (SceneDir(d).frames / cam).iterdir()) == ["0000.png", "0001.png", "0002.png"]
        assert read_png(SceneDir(d).frames / cam / "0001.png").shape == (24, 32, 3)
        depth = np.load(SceneDir(d).gt_depth(cam))
        assert depth.shape == (3, 24, 32) and depth.dtype == np.float32
        assert 2.0 < depth.min() and depth.max() < 14.0
    for k in range(4):
        assert read_png(d / "static" / "frames" / f"cam{k:02d}" / "0000.png").shape == (24, 32, 3)
        assert np.load(d / "static" / "gt_depth" / f"cam{k:02d}.npy").shape == (1, 24, 32)
    assert not (d / "videos").exists()


@pytest.mark.parametrize("sub", ["", "static"])
def test_poses_load_with_proper_rotations_and_bounds(scenes, sub):
    d = scenes / "a" / sub
    rig = load_poses_bounds(SceneDir(d).poses)
    assert np.allclose(np.linalg.det(rig.c2w[:, :, :3]), 1.0)
    assert rig.hwf == pytest.approx((24, 32, focal_from_fov(32, 55.0)))
    assert rig.names == tuple(f"cam{k:02d}" for k in range(len(rig)))
    for k, name in enumerate(rig.names):
        depth = np.load(SceneDir(d).gt_depth(name))
        assert rig.bounds[k, 0] <= np.percentile(depth, 1) and rig.bounds[k, 1] >= np.percentile(depth, 99)
    if not sub:
        np.testing.assert_allclose(rig.c2w[0, :, 3], 0.0)  # cam00 is the rig centre
        assert np.all(rig.c2w[:, 2, 2] > 0.98)  # looking roughly along world -z


def test_deterministic_per_seed(scenes):
    a, b, c = (_files(scenes / n) for n in "abc")
    assert a == b
    assert a.keys() == c.keys()
    assert a["frames/cam00/0000.png"] != c["frames/cam00/0000.png"]


def test_pngs_are_the_rounded_float_render(scenes):
    d = scenes / "a"
    rig = load_poses_bounds(SceneDir(d).poses)
    rgb, depth = render_view(make_scene(0, 3), rig.c2w[1], rig.hwf, 2, supersample=2)
    np.testing.assert_array_equal(read_png(SceneDir(d).frames / "cam01" / "0002.png"), to_uint8(rgb))
    np.testing.assert_allclose(np.load(SceneDir(d).gt_depth("cam01"))[2], depth, rtol=1e-6)


def test_depth_and_poses_agree_between_video_cameras(scenes):
    d = scenes / "a"
    rig = load_poses_bounds(SceneDir(d).poses)
    depth = {n: np.load(SceneDir(d).gt_depth(n)) for n in rig.names}
    for a, b in ((0, 1), (1, 2), (2, 0)):
        _check_consistent(depth[rig.names[a]][0], depth[rig.names[b]][0], rig.c2w[a], rig.c2w[b], rig.hwf)


def test_static_capture_shares_the_world(scenes):
    d = scenes / "a"
    rig = load_poses_bounds(SceneDir(d).poses)
    srig = load_poses_bounds(SceneDir(d).static.poses)
    cam00_depth = np.load(SceneDir(d).gt_depth("cam00"))[0]
    for k, name in enumerate(srig.names):
        sdepth = np.load(d / "static" / "gt_depth" / f"{name}.npy")[0]
        _check_consistent(sdepth, cam00_depth, srig.c2w[k], rig.c2w[0], rig.hwf, min_exact=0.4)
    # a static-world camera at cam00's pose reproduces cam00's frame 0 wherever nothing moves
    scene = make_scene(0, 3)
    static_rgb, static_depth = render_view(scene.without_moving(), rig.c2w[0], rig.hwf, 0, supersample=2)
    frame = read_png(SceneDir(d).frames / "cam00" / "0000.png")
    moved = np.abs(static_depth - cam00_depth) > 1e-4
    moved[1:] |= moved[:-1]
    moved[:-1] |= moved[1:]
    moved[:, 1:] |= moved[:, :-1]
    moved[:, :-1] |= moved[:, 1:]
    assert 0 < moved.mean() < 0.5
    np.testing.assert_array_equal(to_uint8(static_rgb)[~moved], frame[~moved])


def test_moving_objects_move_and_cover_a_modest_fraction():
    scene = make_scene(0, 20)
    hwf = (72, 96, focal_from_fov(96, 55.0))
    c2w = video_cameras(scene, 7)[0]
    dirs = pixel_directions(72, 96, hwf[2]).numpy() @ c2w[:, :3].T
    origins = np.broadcast_to(c2w[:, 3], dirs.shape)
    moving = [k for k, s in enumerate(scene.shapes) if s.motion is not None]
    masks = [np.isin(cast_rays(scene, origins, dirs, t).shape_id, moving) for t in (0, 19)]
    assert 0.03 < masks[0].mean() < 0.2 and 0.03 < masks[1].mean() < 0.2
    assert (masks[0] != masks[1]).mean() > 0.05


def test_inward_rig_is_closed():
    scene = make_scene(3, 4, rig="inward")
    hwf = (12, 16, focal_from_fov(16, 55.0))
    cams = video_cameras(scene, 6)
    assert np.allclose(np.linalg.det(cams[:, :, :3]), 1.0)
    for c2w in cams[[0, 5]]:
        rgb, depth = render_view(scene, c2w, hwf, 3, supersample=1)
        assert np.all(np.isfinite(depth)) and 2.0 < depth[6, 8] < 9.0


def test_script_writes_a_scene_with_videos(tmp_path):
    out = tmp_path / "scene"
    args = [out, "--n_cams", 2, "--n_frames", 2, "--width", 24, "--height", 16, "--n_static_views", 1]
    done = subprocess.run([sys.executable, "-m", "tools.make_synthetic_scene", *map(str, args)],
                          capture_output=True, text=True, timeout=120, env=script_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and str(out) in done.stdout
    frames = np.stack(list(read_video(out / "videos" / "cam01.mp4")))
    assert frames.shape == (2, 16, 24, 3)
    pngs = np.stack([read_png(SceneDir(out).frames / "cam01" / f"{t:04d}.png") for t in range(2)])
    assert np.abs(frames.astype(int) - pngs).mean() < 8  # yuv420p chroma subsampling at 24x16
    again = subprocess.run([sys.executable, "-m", "tools.make_synthetic_scene", str(out)],
                           capture_output=True, text=True, timeout=120, env=script_env())
    assert again.returncode == 2 and "--overwrite" in again.stderr


# ---------------------------------------------------------------------- texture="detailed" (for SfM)
def test_detailed_texture_keeps_geometry_and_the_default_stays_smooth():
    smooth, detailed = make_scene(2, 3), make_scene(2, 3, texture="detailed")
    assert smooth.texture == "smooth" and detailed.texture == "detailed"
    assert all(not s.texture.noise for s in smooth.shapes) and all(s.texture.noise for s in detailed.shapes)
    assert [replace(s, texture=replace(s.texture, noise=())) for s in detailed.shapes] == list(smooth.shapes)
    hwf = (24, 32, focal_from_fov(32, 55.0))
    c2w = video_cameras(smooth, 3)[1]
    (rgb_s, depth_s), (rgb_d, depth_d) = (render_view(s, c2w, hwf, 2, supersample=1) for s in (smooth, detailed))
    np.testing.assert_array_equal(depth_s, depth_d)
    assert np.abs(rgb_s - rgb_d).mean() > 0.03
    np.testing.assert_array_equal(rgb_d, render_view(make_scene(2, 3, texture="detailed"), c2w, hwf, 2, 1)[0])
    with pytest.raises(UserError, match="unknown texture 'busy'"):
        write_scene(Path("/nonexistent/never_written"), texture="busy")


def test_value_noise_is_smooth_bounded_and_does_not_repeat():
    rng = np.random.default_rng(0)
    p = rng.uniform(-50, 50, (20000, 3))
    v = value_noise(p, 0.1, 7)
    assert -1 <= v.min() < -0.5 and 0.5 < v.max() <= 1 and abs(v.mean()) < 0.05
    np.testing.assert_array_equal(v, value_noise(p, 0.1, 7))
    assert np.corrcoef(v, value_noise(p, 0.1, 8))[0, 1] < 0.05  # seeds are independent
    for period in (256, 1024, 4096):  # hash-table periods of classic noise: not here
        assert np.corrcoef(v, value_noise(p + period * 0.1, 0.1, 7))[0, 1] < 0.05
    assert np.abs(value_noise(p + 1e-4, 0.1, 7) - v).max() < 0.02  # continuous


def test_detailed_texture_gives_sift_hundreds_of_features():
    pycolmap = pytest.importorskip("pycolmap")
    extractor = pycolmap.FeatureExtractor.create(device=pycolmap.Device.cpu)
    hwf = (240, 320, focal_from_fov(320, 55.0))
    counts = {}
    for texture in ("smooth", "detailed"):
        scene = make_scene(0, 1, texture=texture)
        rgb, _ = render_view(scene, video_cameras(scene, 7)[1], hwf, 0, supersample=2)
        grey = to_uint8(rgb @ np.array([0.299, 0.587, 0.114]))  # SIFT runs on grey levels, as in COLMAP
        counts[texture] = len(extractor.extract_from_uint8_array(grey)[0])
    assert counts["detailed"] > 500 and counts["smooth"] < 0.2 * counts["detailed"], counts


def test_gt_keypoint_table_is_a_colmap_depth_file_of_static_ground_truth(scenes, tmp_path):
    scene = scenes / "a"
    names = ["cam01", "cam02"]
    table = gt_keypoint_table(scene, names, (24, 32), n_per_cam=20, seed=0)
    save_depth_table(SceneDir(tmp_path).sparse_depth, table)
    sp = load_sparse_depth(SceneDir(tmp_path).sparse_depth)  # the trainer's reader accepts it
    assert list(sp.cam_names) == names and sp.hw == (24, 32) and len(sp.depth) > 0
    for k, name in enumerate(names):
        gt = np.load(SceneDir(scene).gt_depth(name))
        sel = sp.cam_index == k
        assert 0 < sel.sum() <= 20
        i, j = (sp.x[sel] - 0.5).astype(int), (sp.y[sel] - 0.5).astype(int)
        np.testing.assert_allclose(sp.depth[sel], gt[0, j, i], rtol=1e-6)  # depth at the keypoint's pixel
        assert np.all(np.ptp(gt[:, j, i], axis=0) < 1e-5)  # static points only
    e = sp.reproj_error
    np.testing.assert_allclose(sp.weight, 2 * np.exp(-(e / e.mean()) ** 2), rtol=1e-5)

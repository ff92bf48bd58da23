"""Camera paths: handedness (no mirrored videos), time schedule, path files and their validation."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import UserError
from dataLoader.dataset import scene_aabb
from dataLoader.poses import SceneNormalization, average_pose, load_poses_bounds
from dataLoader.scene_layout import SceneDir
from engine.render.camera_paths import (
    PATHS,
    CameraPath,
    convergence_point,
    focus_depth,
    load_path_file,
    look_at,
    make_path,
    save_path_file,
)

H, W, FOCAL = 24, 32, 30.0


@pytest.fixture(scope="module")
def rig(tiny_scene):
    """(camera table with normalized c2w [K,3,4], normalization) of the tiny synthetic scene."""
    poses = load_poses_bounds(SceneDir(tiny_scene).poses)
    norm = SceneNormalization.from_rig(poses, scene_aabb((-1.5, -1.5, -1.0)))
    return {"c2w": norm.apply(poses.c2w), "names": list(poses.names or [])}, norm


def project_u(c2w: np.ndarray, point: np.ndarray) -> float:
    """Column (pixel x) of a normalized-world point [3] in an OpenGL camera c2w [3, 4] (looks along -z)."""
    p = c2w[:, :3].T @ (point - c2w[:, 3])
    assert p[2] < 0, "point behind the camera"
    return W / 2 + FOCAL * p[0] / -p[2]


@pytest.mark.parametrize("kind", PATHS)
def test_path_rotations_have_training_handedness(rig, kind):
    cams, _ = rig
    train_det = np.linalg.det(cams["c2w"][:, :, :3])
    path = make_path(kind, cams, n_views=16, frames=(0, 4), freeze_frame=2)
    det = np.linalg.det(path.c2w[:, :, :3])
    np.testing.assert_allclose(train_det, 1.0, atol=1e-6)
    np.testing.assert_allclose(det, 1.0, atol=1e-6)
    rot = path.c2w[:, :, :3]
    np.testing.assert_allclose(np.einsum("nji,njk->nik", rot, rot), np.broadcast_to(np.eye(3), rot.shape), atol=1e-9)


@pytest.mark.parametrize("kind", PATHS)
def test_path_images_are_not_mirrored(rig, kind):
    """A point right of the focus point (along the rig's right axis) projects right of centre in
    every path camera, exactly as it does in every training camera."""
    cams, _ = rig
    c2w = cams["c2w"]
    avg = average_pose(c2w)
    # the orbit looks at the point the cameras converge on, the others at the focus point
    target = convergence_point(cams) if kind == "orbit" else avg[:, 3] - focus_depth(cams) * avg[:, 2]
    point = target + 0.3 * avg[:, 0]  # the rig's right axis
    for cam in c2w:
        assert project_u(cam, point) > project_u(cam, target)
    path = make_path(kind, cams, n_views=12, frames=(0, 4))
    for cam in path.c2w:
        assert project_u(cam, target) == pytest.approx(W / 2, abs=1e-6)  # paths look at their target
        assert project_u(cam, point) > W / 2 + 1.0


def test_look_at_hand_computed():
    m = look_at(np.array([0.0, 0.0, 0.0]), np.array([0.0, 0.0, -5.0]), np.array([0.0, 1.0, 0.0]))
    np.testing.assert_allclose(m, np.concatenate([np.eye(3), np.zeros((3, 1))], axis=1), atol=1e-12)


def test_spiral_and_circle_times_loop_over_the_frame_range(rig):
    cams, _ = rig
    spiral = make_path("spiral", cams, n_views=7, frames=(1, 4))
    np.testing.assert_array_equal(spiral.times, [1, 2, 3, 1, 2, 3, 1])
    circle = make_path("circle", cams, n_views=5, frames=(0, 4))
    np.testing.assert_array_equal(circle.times, [0, 1, 2, 3, 0])
    z_local = (circle.c2w[:, :, 3] - circle.c2w[:, :, 3].mean(0)) @ cams["c2w"][:, :, 2].mean(0)
    np.testing.assert_allclose(z_local, 0.0, atol=1e-3)  # flat circle: no motion along the view axis


def test_bullet_time_freezes_one_frame_and_sweeps_left_to_right(rig):
    cams, _ = rig
    path = make_path("bullet_time", cams, n_views=6, frames=(0, 4), freeze_frame=3)
    assert len(path) == 6 and set(path.times.tolist()) == {3}
    right = cams["c2w"][:, :, 0].mean(0)
    x = path.c2w[:, :, 3] @ right
    assert np.all(np.diff(x) > 0)
    train_x = cams["c2w"][:, :, 3] @ right
    assert x[0] == pytest.approx(train_x.min(), abs=1e-6) and x[-1] == pytest.approx(train_x.max(), abs=1e-6)


def test_path_file_round_trip(rig, tmp_path):
    cams, norm = rig
    path = make_path("spiral", cams, n_views=5, frames=(0, 4))
    save_path_file(tmp_path / "p.json", CameraPath(path.c2w, path.times, 25.0, (12, 16)), norm)
    doc = json.loads((tmp_path / "p.json").read_text())
    assert len(doc["frames"]) == 5 and np.asarray(doc["frames"][0]["c2w"]).shape == (3, 4)
    back = load_path_file(tmp_path / "p.json", norm, n_frames=4)
    np.testing.assert_allclose(back.c2w, path.c2w, atol=1e-9)
    np.testing.assert_array_equal(back.times, path.times)
    assert back.focal == 25.0 and back.hw == (12, 16)


def _frame(c2w, time=0):
    return {"c2w": np.asarray(c2w).tolist(), "time": time}


GOOD = np.concatenate([np.eye(3), [[0.1], [0.2], [3.0]]], axis=1)
MIRRORED = GOOD * np.array([-1, 1, 1, 1])
SHEARED = GOOD + np.array([[0, 0.3, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
NAN = np.where(np.eye(3, 4) > 0, np.nan, GOOD)


@pytest.mark.parametrize("doc, message", [
    ({"frames": [_frame(GOOD[:2])]}, "frame 0: c2w must be 3x4 or 4x4"),
    ({"frames": [_frame(GOOD), _frame(MIRRORED)]}, "frame 1: c2w rotation is not orthonormal with det +1"),
    ({"frames": [_frame(SHEARED)]}, "not orthonormal"),
    ({"frames": [_frame(NAN)]}, "NaN"),
    ({"frames": [{"c2w": "identity"}]}, "not a numeric matrix"),
    ({"frames": [_frame(GOOD, time=9)]}, "time must be an integer frame index in [0, 4)"),
    ({"frames": [_frame(GOOD, time=1.5)]}, "time must be an integer"),
    ({"frames": [{"pose": GOOD.tolist()}]}, "expected an object with a \"c2w\" matrix"),
    ({"frames": []}, "non-empty list"),
    ([1, 2], "non-empty list"),
    ({"frames": [_frame(GOOD)], "focal": -3}, "focal must be a positive number"),
    ({"frames": [_frame(GOOD)], "hw": [10]}, "hw must be [H, W]"),
])
def test_malformed_path_files_give_one_clear_error(rig, tmp_path, doc, message):
    _, norm = rig
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(UserError) as err:
        load_path_file(f, norm, n_frames=4)
    assert message in str(err.value) and str(f) in str(err.value)
    assert "\n" not in str(err.value)


def test_path_file_that_is_not_json(rig, tmp_path):
    f = tmp_path / "p.json"
    f.write_text("{frames: oops")
    with pytest.raises(UserError, match="not valid JSON"):
        load_path_file(f, rig[1], n_frames=4)


def test_4x4_pose_and_default_times_are_accepted(rig, tmp_path):
    _, norm = rig
    m4 = np.vstack([GOOD, [0, 0, 0, 1]])
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"frames": [{"c2w": m4.tolist()}] * 6}))
    path = load_path_file(f, norm, n_frames=4)
    np.testing.assert_array_equal(path.times, [0, 1, 2, 3, 0, 1])
    np.testing.assert_allclose(norm.unapply(path.c2w)[0], GOOD, atol=1e-9)

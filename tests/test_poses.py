"""poses_bounds.npy parsing, the LLFF -> OpenGL axis conversion and the scene normalization."""
from __future__ import annotations

import numpy as np
import pytest

from core.errors import UserError
from dataLoader.poses import (
    CameraRig,
    SceneNormalization,
    average_pose,
    cams_file,
    llff_to_opengl,
    load_poses_bounds,
    opengl_to_llff,
    parse_poses_bounds,
    save_poses_bounds,
    to_poses_bounds,
)
from dataLoader.scene_layout import SceneDir

AABB = [[-1.5, -1.67, -1.0], [1.5, 1.67, 1.0]]


def rot_y(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def random_rotations(k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(k, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    q[np.linalg.det(q) < 0, :, 0] *= -1  # proper rotations only
    return q


def rig(c2w: np.ndarray, bounds=None) -> CameraRig:
    k = c2w.shape[0]
    bounds = np.tile([2.0, 10.0], (k, 1)) if bounds is None else np.asarray(bounds, dtype=np.float64)
    return CameraRig(c2w=c2w, hwf=(24.0, 32.0, 30.0), bounds=bounds)


# ---------------------------------------------------------------------- axis conversion
def test_llff_identity_camera_converts_to_identity():
    # an OpenGL identity camera has LLFF columns down = -y, right = +x, back = +z
    r_llff = np.column_stack([[0, -1, 0], [1, 0, 0], [0, 0, 1]]).astype(float)
    np.testing.assert_array_equal(llff_to_opengl(r_llff), np.eye(3))
    np.testing.assert_array_equal(opengl_to_llff(np.eye(3)), r_llff)


def test_llff_conversion_of_a_camera_looking_along_minus_x():
    # camera looking along world -x: back = +x, up = +y, right = back x up... = -z
    down, right, back = [0, -1, 0], [0, 0, -1], [1, 0, 0]
    r_llff = np.column_stack([down, right, back]).astype(float)
    expected = np.column_stack([right, [0, 1, 0], back]).astype(float)
    r_gl = llff_to_opengl(r_llff)
    np.testing.assert_array_equal(r_gl, expected)
    assert np.linalg.det(r_gl) == pytest.approx(1.0)
    np.testing.assert_array_equal(opengl_to_llff(r_gl), r_llff)


def test_parse_hand_written_row():
    # the same camera as above, centre (1, 2, 3), H=24 W=32 f=20, near 2 far 10, written row-major [R | c | hwf]
    row = [0, 0, 1, 1, 24,
           -1, 0, 0, 2, 32,
           0, -1, 0, 3, 20,
           2, 10]
    parsed = parse_poses_bounds(np.array([row], dtype=float))
    expected_c2w = np.array([[0, 0, 1, 1], [0, 1, 0, 2], [-1, 0, 0, 3]], dtype=float)
    np.testing.assert_array_equal(parsed.c2w[0], expected_c2w)
    assert parsed.hwf == (24.0, 32.0, 20.0)
    np.testing.assert_array_equal(parsed.bounds, [[2.0, 10.0]])
    np.testing.assert_array_equal(to_poses_bounds(parsed.c2w, parsed.hwf, parsed.bounds), [row])


def test_poses_bounds_round_trip():
    k = 5
    c2w = np.concatenate([random_rotations(k), np.random.default_rng(1).normal(size=(k, 3, 1))], axis=-1)
    bounds = np.column_stack([np.linspace(1, 2, k), np.linspace(5, 9, k)])
    arr = to_poses_bounds(c2w, (24, 32, 30.5), bounds)
    assert arr.shape == (k, 17)
    back = parse_poses_bounds(arr)
    np.testing.assert_allclose(back.c2w, c2w, atol=1e-12)
    np.testing.assert_allclose(back.bounds, bounds)
    assert back.hwf == (24.0, 32.0, 30.5)
    np.testing.assert_allclose(to_poses_bounds(back.c2w, back.hwf, back.bounds), arr, atol=1e-12)


def test_save_and_load_with_names(tmp_path):
    c2w = np.concatenate([random_rotations(3), np.zeros((3, 3, 1))], axis=-1)
    path = SceneDir(tmp_path).poses
    save_poses_bounds(path, c2w, (24, 32, 30), np.tile([1.0, 5.0], (3, 1)), ["cam00", "cam01", "cam02"])
    loaded = load_poses_bounds(path)
    assert loaded.names == ("cam00", "cam01", "cam02")
    np.testing.assert_allclose(loaded.c2w, c2w, atol=1e-12)
    assert not list(tmp_path.glob("*.tmp*"))


# ---------------------------------------------------------------------- average pose
def test_average_pose_of_symmetric_rig_is_identity():
    c2w = np.stack([np.concatenate([rot_y(0.3), [[1.0], [0.0], [0.0]]], axis=1),
                    np.concatenate([rot_y(-0.3), [[-1.0], [0.0], [0.0]]], axis=1)])
    avg = average_pose(c2w)
    np.testing.assert_allclose(avg, np.concatenate([np.eye(3), np.zeros((3, 1))], axis=1), atol=1e-12)


def published_average_pose(c2w: np.ndarray) -> np.ndarray:
    """The TensoRF/MixVoxels formula x = cross(z, y'): a mirrored frame for [right, up, back] poses."""
    z = c2w[:, :, 2].mean(0)
    z = z / np.linalg.norm(z)
    x = np.cross(z, c2w[:, :, 1].mean(0))
    x = x / np.linalg.norm(x)
    return np.stack([x, np.cross(x, z), z, c2w[:, :, 3].mean(0)], axis=1)


def test_average_pose_is_proper_where_the_published_formula_mirrors():
    rots = np.stack([rot_y(a) for a in (0.1, 0.2, -0.15, 0.05)]) @ np.array(
        [[1, 0, 0], [0, np.cos(0.1), -np.sin(0.1)], [0, np.sin(0.1), np.cos(0.1)]])
    c2w = np.concatenate([rots, np.random.default_rng(0).normal(size=(4, 3, 1))], axis=-1)
    assert np.linalg.det(published_average_pose(c2w)[:, :3]) == pytest.approx(-1.0)  # the published defect
    avg = average_pose(c2w)
    r = avg[:, :3]
    np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)
    # same axes as the published frame except the mirrored right axis
    np.testing.assert_allclose(r[:, 0], -published_average_pose(c2w)[:, 0], atol=1e-12)
    np.testing.assert_allclose(r[:, 1:], published_average_pose(c2w)[:, 1:3], atol=1e-12)
    np.testing.assert_allclose(avg[:, 3], c2w[:, :, 3].mean(0))


def test_average_pose_proper_for_mirrored_input_cameras():
    # cameras whose rotation blocks are reflections (det -1) still give a proper average frame
    rots = random_rotations(3, seed=5) * np.array([-1.0, 1.0, 1.0])
    assert np.allclose(np.linalg.det(rots), -1)
    avg = average_pose(np.concatenate([rots, np.zeros((3, 3, 1))], axis=-1))
    assert np.linalg.det(avg[:, :3]) == pytest.approx(1.0)


# ---------------------------------------------------------------------- normalization
def test_normalization_scale_and_hand_point():
    rots = np.stack([rot_y(a) for a in (0.1, -0.2, 0.3)])
    c2w = np.concatenate([rots, np.array([[[0.5], [0.1], [2.0]], [[-1.0], [0.3], [1.0]], [[0.2], [-0.4], [0.0]]])],
                         axis=-1)
    norm = SceneNormalization.from_rig(rig(c2w, [[2.0, 10.0], [1.5, 8.0], [3.0, 9.0]]), AABB)
    assert norm.scale == pytest.approx(1 / (0.75 * 1.5))
    avg = norm.avg
    # the average pose itself maps to the identity camera at the origin
    np.testing.assert_allclose(norm.apply(avg[None])[0], np.concatenate([np.eye(3), np.zeros((3, 1))], 1),
                               atol=1e-12)
    # a camera at c_avg + R_avg @ (1, 2, -3) sits at scale * (1, 2, -3), rotation R_avg^T R
    offset = np.array([1.0, 2.0, -3.0])
    cam = np.concatenate([rot_y(0.7), (avg[:, 3] + avg[:, :3] @ offset)[:, None]], axis=1)
    out = norm.apply(cam[None])[0]
    np.testing.assert_allclose(out[:, 3], norm.scale * offset, atol=1e-12)
    np.testing.assert_allclose(out[:, :3], avg[:, :3].T @ rot_y(0.7), atol=1e-12)


def test_normalization_apply_unapply_round_trip():
    k = 6
    c2w = np.concatenate([random_rotations(k, seed=2), np.random.default_rng(4).normal(size=(k, 3, 1))], -1)
    norm = SceneNormalization.from_rig(rig(c2w, np.column_stack([np.linspace(0.8, 2, k), np.full(k, 20.0)])), AABB)
    assert norm.scale == pytest.approx(1 / (0.75 * 0.8))
    normed = norm.apply(c2w)
    np.testing.assert_allclose(np.linalg.det(normed[:, :, :3]), 1.0)
    np.testing.assert_allclose(norm.unapply(normed), c2w, atol=1e-12)
    np.testing.assert_allclose(norm.apply(norm.unapply(normed)), normed, atol=1e-12)
    # serialization keeps the world
    again = SceneNormalization.from_dict(norm.to_dict())
    assert again == norm and again.same_world(norm)


def test_normalizations_of_different_worlds_are_refused():
    c2w = np.concatenate([random_rotations(3), np.zeros((3, 3, 1))], axis=-1)
    a = SceneNormalization.from_rig(rig(c2w), AABB)
    b = SceneNormalization.from_rig(rig(c2w, np.tile([1.0, 10.0], (3, 1))), AABB)
    c = SceneNormalization.from_rig(rig(c2w), [[-2, -2, -1], [2, 2, 1]])  # only the aabb differs
    assert a.same_world(c)
    assert not a.same_world(b)
    with pytest.raises(UserError, match="depth.npz"):
        a.require_same_world(b, "depth.npz")


# ---------------------------------------------------------------------- bad input
def good_array(k: int = 2) -> np.ndarray:
    c2w = np.concatenate([random_rotations(k), np.zeros((k, 3, 1))], axis=-1)
    return to_poses_bounds(c2w, (24, 32, 30), np.tile([1.0, 5.0], (k, 1)))


@pytest.mark.parametrize("arr", [np.zeros((2, 16)), np.zeros(17), np.zeros((0, 17)), np.zeros((2, 17, 1))])
def test_wrong_shapes_raise(arr):
    with pytest.raises(UserError, match="my_poses.npy"):
        parse_poses_bounds(arr, "my_poses.npy")


def test_nan_raises_naming_the_row():
    arr = good_array(3)
    arr[1, 4] = np.nan
    with pytest.raises(UserError, match=r"my_poses.npy: NaN.*\[1\]"):
        parse_poses_bounds(arr, "my_poses.npy")


def test_non_orthonormal_rotation_and_bad_bounds_raise():
    arr = good_array()
    arr[0, 0] *= 2.0
    with pytest.raises(UserError, match="orthonormal"):
        parse_poses_bounds(arr)
    arr = good_array()
    arr[1, 15:17] = [5.0, 1.0]
    with pytest.raises(UserError, match="near/far"):
        parse_poses_bounds(arr)
    arr = good_array()
    arr[1, 14] = 31.0  # focal of camera 1 differs
    with pytest.raises(UserError, match="disagree"):
        parse_poses_bounds(arr)


def test_names_file_mismatch_raises(tmp_path):
    path = SceneDir(tmp_path).poses
    np.save(path, good_array(3))
    cams_file(path).write_text("cam00\ncam01\n")
    with pytest.raises(UserError, match="poses_bounds_cams.txt: lists 2 cameras .* 3 rows"):
        load_poses_bounds(path)


def test_missing_and_unreadable_files_raise(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_poses_bounds(SceneDir(tmp_path).poses)
    SceneDir(tmp_path).poses.write_bytes(b"not numpy")
    with pytest.raises(UserError, match="poses_bounds.npy"):
        load_poses_bounds(SceneDir(tmp_path).poses)


@pytest.mark.parametrize("row, match", [
    ("mirror", r"rows \[1\] have det \[-1.0\]"),  # det -1: a mirrored camera, orthonormal columns
    ("shear", r"rows \[1\] are not orthonormal"),  # det +1 but skewed axes
])
def test_mirrored_and_sheared_rotations_are_refused(row, match):
    arr = good_array()
    mats = arr[1, :15].reshape(3, 5)
    if row == "mirror":
        mats[:, 2] *= -1.0
    else:
        mats[:, :3] = mats[:, :3] @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert abs(abs(np.linalg.det(mats[:, :3])) - 1.0) < 1e-12
    arr[1, :15] = mats.reshape(15)
    with pytest.raises(UserError, match=match):
        parse_poses_bounds(arr)

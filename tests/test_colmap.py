"""COLMAP wrappers, imgs2poses.py and colmap2depth.py on the real N3DV fixture and a synthetic scene.

The fixture (../shared/data/n3dv_flame_steak_5cam) has COLMAP ids out of name order and
names whose string order (0, 14, 3, 5, 8) differs from their numeric order (0, 3, 5, 8, 14).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pycolmap
import pytest

import colmap2depth
import imgs2poses
from bench import sfm_accuracy
from core.errors import UserError
from dataLoader import colmap
from dataLoader.depth_files import load_sparse_depth
from dataLoader.poses import cams_file, load_poses_bounds
from dataLoader.scene_layout import SceneDir
from dataLoader.video_io import read_png

REPO = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).resolve().parents[2] / "shared/data/n3dv_flame_steak_5cam"
NUMERIC_ORDER = ["0", "3", "5", "8", "14"]
needs_fixture = pytest.mark.skipif(not SceneDir(FIXTURE).sparse_model.is_dir(),
                                   reason=f"real COLMAP fixture not found at {FIXTURE}")


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    """A writable scene dir holding a copy of the fixture's images/ (the model stays read-only)."""
    shutil.copytree(FIXTURE / "images", tmp_path / "images")
    return tmp_path


@pytest.fixture
def posed(scene: Path) -> Path:
    """``scene`` after ``imgs2poses --sparse_dir <fixture model>``."""
    imgs2poses.main([str(scene), "--sparse_dir", str(SceneDir(FIXTURE).sparse_model)])
    return scene


# ----------------------------------------------------------------------------- reading the model

@needs_fixture
def test_listing_is_numeric_for_images_folder():
    names = [cam for cam, _ in colmap.list_capture_images(FIXTURE)]
    assert names == NUMERIC_ORDER
    assert sorted(names) != NUMERIC_ORDER  # the string-sort trap is real


@needs_fixture
def test_model_images_matched_by_name_not_id():
    rec = colmap.read_model(SceneDir(FIXTURE).sparse_model)
    ids = colmap.image_ids_for_cameras(rec, NUMERIC_ORDER)
    assert [rec.images[i].name for i in ids] == [f"{n}.jpg" for n in NUMERIC_ORDER]
    assert ids != sorted(ids)  # COLMAP ids are not in name order
    c2w = colmap.model_c2w(rec, ids)
    for k, i in enumerate(ids):
        image = rec.images[i]
        np.testing.assert_allclose(c2w[k, :, 3], image.projection_center(), atol=1e-9)
        np.testing.assert_allclose(-c2w[k, :, 2], image.viewing_direction(), atol=1e-9)  # looks along -z
        assert np.linalg.det(c2w[k, :, :3]) == pytest.approx(1.0)


@needs_fixture
def test_opengl_poses_reproject_observations():
    """Hand projection with the OpenGL c2w ([right, up, back]) lands on COLMAP's keypoints."""
    rec = colmap.read_model(SceneDir(FIXTURE).sparse_model)
    ids = colmap.image_ids_for_cameras(rec, NUMERIC_ORDER)
    c2w = colmap.model_c2w(rec, ids)
    for k, i in enumerate(ids):
        cam = rec.cameras[rec.images[i].camera_id]
        obs = rec.images[i].get_observation_points2D()
        xyz = np.array([rec.points3D[p.point3D_id].xyz for p in obs])
        xy = np.array([p.xy for p in obs])
        local = (xyz - c2w[k, :, 3]) @ c2w[k, :, :3]  # [right, up, back] coordinates
        u = cam.principal_point_x + cam.focal_length_x * local[:, 0] / -local[:, 2]
        v = cam.principal_point_y - cam.focal_length_y * local[:, 1] / -local[:, 2]
        assert np.median(np.hypot(u - xy[:, 0], v - xy[:, 1])) < 2.0


# ----------------------------------------------------------------------------- imgs2poses

@needs_fixture
def test_imgs2poses_sparse_dir_writes_llff_rows(posed: Path):
    raw = np.load(SceneDir(posed).poses)
    assert raw.shape == (5, 17)
    mats = raw[:, :15].reshape(5, 3, 5)
    np.testing.assert_allclose(np.linalg.det(mats[:, :, :3]), 1.0, atol=1e-9)  # LLFF [down, right, back]
    assert SceneDir(posed).camera_names.read_text().split() == NUMERIC_ORDER
    rig = load_poses_bounds(SceneDir(posed).poses)
    np.testing.assert_allclose(np.linalg.det(rig.c2w[:, :, :3]), 1.0, atol=1e-9)
    rec = pycolmap.Reconstruction(SceneDir(FIXTURE).sparse_model)
    cams = [rec.cameras[im.camera_id] for im in rec.images.values()]
    focal = np.mean([c.focal_length_x * np.median([d.width for d in cams]) / c.width for c in cams])
    assert rig.hwf == pytest.approx((2020, 2694, focal))  # median model size, averaged focal (0.56% apart)
    for k, name in enumerate(NUMERIC_ORDER):
        image = rec.find_image_with_name(f"{name}.jpg")
        np.testing.assert_allclose(rig.c2w[k, :, 3], image.projection_center(), atol=1e-9)
    assert np.all(rig.bounds[:, 0] > 0) and np.all(rig.bounds[:, 1] > rig.bounds[:, 0])
    assert colmap.read_model(SceneDir(posed).sparse_model).num_points3D() == rec.num_points3D()


@needs_fixture
def test_imgs2poses_never_overwrites_without_flag(posed: Path):
    before = SceneDir(posed).poses.read_bytes()
    with pytest.raises(UserError, match="already exists"):
        imgs2poses.main([str(posed), "--sparse_dir", str(SceneDir(FIXTURE).sparse_model)])
    assert SceneDir(posed).poses.read_bytes() == before
    imgs2poses.main([str(posed), "--sparse_dir", str(SceneDir(FIXTURE).sparse_model), "--overwrite", "1"])
    assert SceneDir(posed).poses.read_bytes() == before  # same model, same file


@needs_fixture
def test_imgs2poses_names_cameras_missing_from_model(scene: Path):
    shutil.copy(scene / "images/0.jpg", scene / "images/99.jpg")
    with pytest.raises(UserError, match=r"camera\(s\) 99;") as err:
        imgs2poses.main([str(scene), "--sparse_dir", str(SceneDir(FIXTURE).sparse_model)])
    assert "0.jpg" in str(err.value)  # lists what the model has
    assert not SceneDir(scene).poses.exists()


@needs_fixture
def test_imgs2poses_unregistered_image(scene: Path, tmp_path: Path):
    rec = pycolmap.Reconstruction(SceneDir(FIXTURE).sparse_model)
    rec.deregister_frame(rec.find_image_with_name("5.jpg").frame_id)
    model = tmp_path / "model"
    model.mkdir()
    rec.write(model)
    with pytest.raises(UserError, match=r"camera\(s\) 5[;\s]"):
        imgs2poses.main([str(scene), "--sparse_dir", str(model)])


def test_imgs2poses_no_images_exits_2_with_one_line(tmp_path: Path):
    proc = subprocess.run([sys.executable, str(REPO / "imgs2poses.py"), str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == [f"error: {tmp_path}: no images (expected frames/camXX/ folders or an images/ folder)"]


def test_imgs2poses_rejects_mixed_image_sizes(tmp_path: Path):
    from PIL import Image

    for name, size in (("cam00", (16, 12)), ("cam01", (16, 12)), ("cam02", (18, 12))):
        (SceneDir(tmp_path).frames / name).mkdir(parents=True)
        Image.new("RGB", size).save(SceneDir(tmp_path).frames / name / "0000.png")
    with pytest.raises(UserError, match="different sizes.*cam02/0000.png 12x18"):
        imgs2poses.main([str(tmp_path)])
    assert not SceneDir(tmp_path).poses.exists()


def test_frames_layout_picks_frame_idx_and_string_order(tmp_path: Path):
    from PIL import Image

    for cam in ("cam10", "cam02", "cam00"):
        for t in range(3):
            (SceneDir(tmp_path).frames / cam).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8)).save(SceneDir(tmp_path).frames / cam / f"{t:04d}.png")
    got = colmap.list_capture_images(tmp_path, frame_idx=2)
    assert [(c, p.name) for c, p in got] == [("cam00", "0002.png"), ("cam02", "0002.png"), ("cam10", "0002.png")]
    with pytest.raises(UserError, match="no frame 3"):
        colmap.list_capture_images(tmp_path, frame_idx=3)
    with pytest.raises(UserError, match="exactly one image"):
        colmap.list_capture_images(tmp_path, one_each=True)


def test_empty_or_missing_model(tmp_path: Path):
    with pytest.raises(UserError, match="not found"):
        colmap.read_model(tmp_path / "nope")
    pycolmap.Reconstruction().write(tmp_path)
    with pytest.raises(UserError, match="empty COLMAP model"):
        colmap.read_model(tmp_path)


def test_shared_intrinsics_tolerance():
    def cam(f, w=100, h=80):
        return pycolmap.Camera(model="SIMPLE_PINHOLE", width=w, height=h, params=[f, w / 2, h / 2])

    assert colmap.shared_intrinsics([cam(90), cam(90)]) == (80, 100, 90)
    assert colmap.shared_intrinsics([cam(90), cam(90.5)])[2] == pytest.approx(90.25)  # 0.55%: averaged
    assert colmap.shared_intrinsics([cam(90, 100), cam(90.9, 101), cam(90, 100)])[1:] == (100, pytest.approx(90))
    with pytest.raises(UserError, match="sizes 100..200 x 80..160"):
        colmap.shared_intrinsics([cam(90, 100), cam(180, 200, 160)])
    with pytest.raises(UserError, match="--average_intrinsics"):
        colmap.shared_intrinsics([cam(90), cam(95)])
    assert colmap.shared_intrinsics([cam(90), cam(95)], allow_average=True)[2] == pytest.approx(92.5)


# ----------------------------------------------------------------------------- colmap2depth

def _projected(rig_raw: np.ndarray, k: int, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Independent LLFF projection: rows [down, right, back | c | hwf] -> (z [P], xy [P, 2])."""
    m = rig_raw[k, :15].reshape(3, 5)
    down, right, back, centre = m[:, 0], m[:, 1], m[:, 2], m[:, 3]
    h, w, f = m[:, 4]
    rel = xyz - centre
    z = -(rel @ back)
    return z, np.stack([w / 2 + f * (rel @ right) / z, h / 2 + f * (rel @ down) / z], axis=-1)


@needs_fixture
def test_colmap2depth_agrees_with_hand_projection(posed: Path):
    colmap2depth.main([str(posed)])
    with np.load(SceneDir(posed).sparse_depth) as f:
        t = {k: f[k] for k in f.files}
    assert t["cam_names"].tolist() == NUMERIC_ORDER and t["hw"].tolist() == [2020, 2694]
    assert t["cam_index"].dtype == np.int32 and t["depth"].dtype == np.float32
    raw = np.load(SceneDir(posed).poses)
    rec = pycolmap.Reconstruction(SceneDir(FIXTURE).sparse_model)
    errors = np.array([p.error for p in rec.points3D.values()])
    for k, name in enumerate(NUMERIC_ORDER):
        obs = rec.find_image_with_name(f"{name}.jpg").get_observation_points2D()
        xyz = np.array([rec.points3D[p.point3D_id].xyz for p in obs])
        err = np.array([rec.points3D[p.point3D_id].error for p in obs])
        z, xy = _projected(raw, k, xyz)
        inside = (z >= raw[k, 15]) & (z <= raw[k, 16])
        sel = t["cam_index"] == k
        assert sel.sum() == inside.sum() > 500
        z, xy, err = z[inside], xy[inside], err[inside]
        for x, y, d, e in zip(t["x"][sel], t["y"][sel], t["depth"][sel], t["reproj_error"][sel], strict=True):
            near = np.hypot(xy[:, 0] - x, xy[:, 1] - y) < 5.0  # keypoint vs projection: reprojection error
            match = near & (np.abs(z - d) < 1e-5 * d) & (np.abs(err - e) < 1e-5)
            assert match.any(), (name, x, y, d)
    expected_w = 2 * np.exp(-((t["reproj_error"] / errors.mean()) ** 2))
    np.testing.assert_allclose(t["weight"], expected_w, rtol=1e-5)
    sparse = load_sparse_depth(SceneDir(posed).sparse_depth)  # the training side's reader accepts it
    assert sparse.cam_names == NUMERIC_ORDER and sparse.hw == (2020, 2694) and len(sparse.depth) == len(t["depth"])
    for name in NUMERIC_ORDER:  # one keypoint preview per camera beside the table
        assert read_png(posed / f"colmap_depth_{name}.png").shape[2] == 3


@needs_fixture
def test_colmap2depth_refuses_wrong_names(posed: Path):
    cams = cams_file(SceneDir(posed).poses)
    cams.write_text(cams.read_text().replace("14", "15"))
    with pytest.raises(UserError, match=r"camera\(s\) 15"):
        colmap2depth.main([str(posed)])
    assert not SceneDir(posed).sparse_depth.exists()


@needs_fixture
def test_colmap2depth_refuses_other_world(posed: Path):
    raw = np.load(SceneDir(posed).poses)
    raw[3, 3] += 0.5  # move camera "8"
    np.save(SceneDir(posed).poses, raw)
    with pytest.raises(UserError, match=r"not the same world.*camera\(s\) 8 "):
        colmap2depth.main([str(posed)])


@needs_fixture
def test_colmap2depth_without_cams_file_uses_listing_and_catches_string_order(posed: Path):
    SceneDir(posed).camera_names.unlink()
    colmap2depth.main([str(posed)])  # numeric listing of images/ = row order: accepted
    assert np.load(SceneDir(posed).sparse_depth)["cam_names"].tolist() == NUMERIC_ORDER
    raw = np.load(SceneDir(posed).poses)
    string_rows = [NUMERIC_ORDER.index(n) for n in sorted(NUMERIC_ORDER)]  # rows as LLFF's string sort
    np.save(SceneDir(posed).poses, raw[string_rows])
    with pytest.raises(UserError, match="colmap_depth.npz: exists; pass --overwrite 1"):
        colmap2depth.main([str(posed)])
    with pytest.raises(UserError, match="not the same world"):
        colmap2depth.main([str(posed), "--overwrite", "1"])
    shutil.rmtree(posed / "images")
    with pytest.raises(UserError, match="poses_bounds_cams.txt: missing"):
        colmap2depth.main([str(posed), "--overwrite", "1"])


# ----------------------------------------------------------------------------- real SfM, synthetic scene

@pytest.fixture
def quarter(tmp_path: Path) -> Path:
    """A scene dir with the fixture's 676 x 507 images (fast real SfM)."""
    shutil.copytree(FIXTURE / "images_4", tmp_path / "images")
    return tmp_path


@needs_fixture
def test_sfm_on_real_images_matches_reference_model(quarter: Path):
    bench = sfm_accuracy
    imgs2poses.main([str(quarter)])
    est = load_poses_bounds(SceneDir(quarter).poses)
    assert est.names == tuple(NUMERIC_ORDER) and est.hwf[:2] == (507, 676)
    rec = colmap.read_model(SceneDir(FIXTURE).sparse_model)
    ref = colmap.model_c2w(rec, colmap.image_ids_for_cameras(rec, NUMERIC_ORDER))
    err = bench.pose_errors(est.c2w, ref)
    assert err["rot_err_deg"].max() < 1.0 and err["centre_err"].max() < 0.02
    assert est.hwf[2] * 4 == pytest.approx(1454, rel=0.02)  # the reference focal, at 1/4 size


@needs_fixture
def test_sfm_names_unregistered_images(quarter: Path):
    from PIL import Image

    Image.new("RGB", (676, 507), (128, 128, 128)).save(quarter / "images/99.png")  # featureless
    with pytest.raises(UserError, match=r"registered 5 of 6 images with seeds \[0, 1, 2, 3\]; not registered: "
                                        r"99.png \(0 verified matches\)$"):
        imgs2poses.main([str(quarter)])
    assert not SceneDir(quarter).poses.exists() and not (quarter / "sparse").exists()


@pytest.mark.slow
def test_sfm_on_synthetic_scene_matches_ground_truth(tmp_path: Path):
    """imgs2poses (real pycolmap SfM) + colmap2depth against the generator's GT poses and depth.

    The generator's default ``smooth`` textures are too smooth for SIFT, so the scene is written
    with ``texture="detailed"`` at the smallest size where SfM passes these checks for every seed
    tried (``bench.sfm_accuracy.SMALLEST_RELIABLE``, found with its ``--seeds`` sweep), with the
    true focal as a fixed prior. One frame per camera, 7 cameras.
    """
    bench = sfm_accuracy
    width, height = bench.SMALLEST_RELIABLE
    bench.write_variant(tmp_path / "scene", width, height, texture="detailed")
    result = bench.run_variant(tmp_path / "scene", focal_prior=True)
    assert result["registered"] == result["n_cams"] == 7
    assert result["rot_err_deg_max"] < 1.0
    assert result["centre_err_max"] < 0.01  # of the rig size
    assert result["depth_relerr_median"] < 0.03
    assert result["n_keypoints"] > 1000


@pytest.mark.slow
def test_sfm_registers_static_capture_in_the_same_world(tmp_path: Path):
    """--static_dir: one SfM run; the static poses file fits GT under the *video* rig's similarity."""
    bench = sfm_accuracy
    width, height = bench.SMALLEST_RELIABLE
    bench.write_variant(tmp_path / "scene", width, height, texture="detailed", n_static=6)
    result = bench.run_variant(tmp_path / "scene", focal_prior=True, static=True)
    assert result["registered"] == 7 and result["static_registered"] == result["static_n_views"] == 6
    assert result["static_rot_err_deg_max"] < 1.0
    assert result["static_centre_err_max"] < 0.01  # of the video rig's size
    assert result["static_depth_relerr_median"] < 0.03
    names = (tmp_path / "scene/static/poses_bounds_cams.txt").read_text().split()
    assert names == [f"cam{k:02d}" for k in range(6)]


def test_similarity_alignment_recovers_known_transform():
    bench = sfm_accuracy
    rng = np.random.default_rng(0)

    def rotation():
        q = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        return q * np.sign(np.linalg.det(q))

    rot = rotation()
    gt = np.stack([np.concatenate([rotation(), rng.normal(size=(3, 1))], axis=1) for _ in range(5)])
    s, t = 2.5, np.array([1.0, -2.0, 0.5])  # gt = s R est + t
    est = np.concatenate([np.einsum("ji,kjl->kil", rot, gt[:, :, :3]),
                          ((gt[:, :, 3] - t) @ rot / s)[:, :, None]], axis=-1)
    err = bench.pose_errors(est, gt)
    assert err["sim"][0] == pytest.approx(s)
    np.testing.assert_allclose(err["sim"][1], rot, atol=1e-9)
    # arccos near 1 resolves angles only down to ~sqrt(eps) rad (~1e-6 deg): bound well above that floor
    assert err["rot_err_deg"].max() < 1e-4 and err["centre_err"].max() < 1e-7

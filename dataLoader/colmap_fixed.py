"""A sparse COLMAP model in the dataset's own world: features matched and triangulated with the poses of
``poses_bounds.npy`` held fixed (no SfM), so a dataset's shipped calibration (N3DV) is never replaced.

Images: the ``frame_idx``-th frame of every selected camera (``exclude_cams`` honoured), named
``<camera>.<ext>`` in the model. Intrinsics: the poses file's pinhole (focal, centred principal point)
rescaled to the frames' size. Poses: the file's, converted to COLMAP's world-to-camera OpenCV axes.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pycolmap

from core.errors import UserError
from dataLoader import colmap
from dataLoader.scene_files import SceneFiles, load_scene_files

log = logging.getLogger(__name__)


def opengl_c2w_to_opencv_w2c(c2w: np.ndarray) -> np.ndarray:
    """[K, 3, 4] c2w, OpenGL [right, up, back] -> [K, 3, 4] world-to-camera, OpenCV [right, down, forward]
    (inverse of :func:`dataLoader.colmap.opencv_w2c_to_opengl_c2w`)."""
    rot_cv = c2w[:, :, :3] * np.array([1.0, -1.0, -1.0])
    rot_w2c = np.swapaxes(rot_cv, 1, 2)
    t = -np.einsum("kij,kj->ki", rot_w2c, c2w[:, :, 3])
    return np.concatenate([rot_w2c, t[:, :, None]], axis=-1)


def _groups(scene: SceneFiles, frame_idx: int) -> colmap.ImageGroup:
    n_avail = len(scene.src.files[0])
    if not 0 <= frame_idx < n_avail:
        raise UserError(f"--frame_idx {frame_idx} is outside the {n_avail} frames of {scene.poses_path.parent}")
    paths = tuple(files[frame_idx] for files in scene.src.files)
    names = tuple(f"{cam}{p.suffix.lower()}" for cam, p in zip(scene.src.cam_names, paths, strict=True))
    focal = scene.rig.hwf[2] * scene.src.hw[1] / scene.rig.hwf[1]
    return colmap.ImageGroup(names, paths, focal)


def known_pose_model(db_path: Path, scene: SceneFiles) -> pycolmap.Reconstruction:
    """Cameras and images of the database, each image registered at its ``poses_bounds.npy`` pose."""
    w2c = opengl_c2w_to_opencv_w2c(scene.rig.c2w)
    row = {name: k for k, name in enumerate(scene.src.cam_names)}
    rec = pycolmap.Reconstruction()
    db = pycolmap.Database.open(db_path)
    try:
        for cam in db.read_all_cameras():
            rec.add_camera_with_trivial_rig(cam)
        for im in db.read_all_images():
            pose = pycolmap.Rigid3d(w2c[row[Path(im.name).stem]])
            rec.add_image_with_trivial_frame(pycolmap.Image(name=im.name, camera_id=im.camera_id,
                                                            image_id=im.image_id), pose)
    finally:
        db.close()
    return rec


def triangulate_known_poses(datadir: str | Path, workspace: Path, frame_idx: int = 0,
                            exclude_cams: tuple[str, ...] = (), seed: int = 0) -> pycolmap.Reconstruction:
    """Match one frame per camera and triangulate points with the dataset's poses fixed.

    ``workspace``: an empty scratch folder (images, database). Returns the model; its image poses are the
    poses file's (checked), its world and units are the dataset's.
    """
    scene = load_scene_files(datadir, exclude=exclude_cams)
    group = _groups(scene, frame_idx)
    opts = colmap.SfmOptions(single_camera=True, refine_focal=False, seed=seed)
    colmap.stage_images([group], workspace / "images")
    db = workspace / "database.db"
    with colmap.colmap_log_level():
        colmap.extract_and_match([group], workspace, opts)
        rec = known_pose_model(db, scene)
        (workspace / "sparse").mkdir(exist_ok=True)
        rec = pycolmap.triangulate_points(rec, db, workspace / "images", workspace / "sparse", clear_points=True,
                                          options=colmap.mapping_options(opts, seed), refine_intrinsics=False)
    if rec.num_points3D() == 0:
        raise UserError(f"{datadir}: no point could be triangulated from the {len(group.names)} cameras' "
                        f"frame {frame_idx} (too little texture or overlap?)")
    names = list(scene.src.cam_names)
    ids = colmap.image_ids_for_cameras(rec, names, source=str(datadir))
    colmap.check_same_world(scene.rig.c2w, colmap.model_c2w(rec, ids), names, float(scene.rig.bounds[:, 0].min()),
                            f"{datadir}: fixed-pose triangulation")
    log.info("triangulated %d points from %d cameras with the poses of %s held fixed", rec.num_points3D(),
             len(names), scene.poses_path)
    return rec

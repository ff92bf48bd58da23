"""A stand-in for SfM keypoints on synthetic scenes: a ``colmap_depth.npz`` table from the ground truth.

Small smooth-textured synthetic scenes give COLMAP no model (BENCHMARKS.md, SfM section), and a model
would put the rig in COLMAP's world rather than the ground truth's. Benchmarks that need sparse points
(the DS-NeRF depth term, the bounded-scene box) use this table instead: FAST corners of each camera's
first frame on static pixels, their ground-truth camera-z depth, synthetic reprojection errors
(|N(0, 0.5)| px) and DS-NeRF weights ``2 exp(-(e / mean e)^2)``. Same format as ``colmap2depth.py``.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dataLoader.scene_layout import SceneDir, image_files


def gt_keypoint_table(scene: Path, cam_names: list[str], hw: tuple[int, int], n_per_cam: int = 200,
                      seed: int = 0) -> dict[str, np.ndarray]:
    """``colmap_depth.npz`` content for cameras ``cam_names`` of a synthetic scene (frames of size ``hw``)."""
    scene = Path(scene)
    rng = np.random.default_rng(seed)
    fast = cv2.FastFeatureDetector_create(threshold=10)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("cam_index", "x", "y", "depth", "reproj_error")}
    for ci, name in enumerate(cam_names):
        img = cv2.imread(str(image_files(SceneDir(scene).frames / name)[0]), cv2.IMREAD_GRAYSCALE)
        gt = np.load(SceneDir(scene).gt_depth(name))
        static = np.ptp(gt, axis=0) < 1e-5
        kps = sorted(fast.detect(img), key=lambda k: -k.response)
        xy = np.array([k.pt for k in kps]).round().astype(int).reshape(-1, 2)
        xy = xy[static[xy[:, 1], xy[:, 0]]][:n_per_cam]
        cols["cam_index"].append(np.full(len(xy), ci))
        cols["x"].append(xy[:, 0] + 0.5)
        cols["y"].append(xy[:, 1] + 0.5)
        cols["depth"].append(gt[0, xy[:, 1], xy[:, 0]])
        cols["reproj_error"].append(np.abs(rng.normal(0, 0.5, len(xy))))
    table = {k: np.concatenate(v) for k, v in cols.items()}
    e = table["reproj_error"]
    table["weight"] = 2 * np.exp(-(e / e.mean()) ** 2)
    table = {k: v.astype(np.int32 if k == "cam_index" else np.float32) for k, v in table.items()}
    rig = SceneDir(scene).load_rig()
    c2w = rig.c2w[[list(rig.names).index(n) for n in cam_names]]
    table.update(cam_names=np.asarray(cam_names), hw=np.asarray(hw, dtype=np.int32), c2w=c2w)
    return table

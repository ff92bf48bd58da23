"""SfM accuracy of imgs2poses.py + colmap2depth.py on the synthetic scene; one JSON line per variant.

For each variant a one-frame synthetic scene is written with
``synthetic.scene.write_scene`` (frames/camXX/0000.png, poses_bounds.npy,
gt_depth/camXX.npy), the ground-truth poses are kept, and the two stages run on the
scene dir. The SfM cameras are aligned to the ground truth by a similarity: the
rotation from the cameras' orientations (chordal mean; a centres-only Umeyama fit is
ill-conditioned for a near-planar forward rig), then scale and translation from the
centres in closed form (Umeyama with that rotation). Reported per variant:
``registered`` / ``n_cams``, ``rot_err_deg_max``, ``centre_err_max`` (fraction of the rig
size = largest distance between two GT centres), ``depth_relerr_median`` of the
sparse depths (times the similarity's scale) against gt_depth at the keypoint's pixel,
``n_keypoints``, estimated vs true focal, seconds; or ``error`` when SfM fails.

Variants (``VARIANTS``): the generator's default ``smooth`` texture at the default size (96 x 72)
and at 480 x 360 (SIFT finds too little: SfM fails); the ``detailed`` texture (same geometry,
multi-scale albedo detail, ``write_scene(texture="detailed")``) at 96 x 72 .. 480 x 360 with
the true focal as a fixed prior, at 480 x 360 self-calibrating, and at 320 x 240 together with
8 static-capture views (``--static_dir``; the static poses are judged with the video rig's
similarity). Scenes are rendered with ``--supersample`` (default 3, the generator's) rays per pixel axis.
Usage: python -m bench.sfm_accuracy [--only detailed_320 ...] [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import colmap2depth
import imgs2poses
from core.errors import UserError
from dataLoader.depth_files import SparseDepth, load_sparse_depth
from dataLoader.poses import load_poses_bounds
from dataLoader.scene_layout import SceneDir
from synthetic import scene as synthetic_scene

VARIANTS = {  # name: (width, height, texture, fixed focal prior, static views)
    "smooth_96": (96, 72, "smooth", False, 0),
    "smooth_480": (480, 360, "smooth", False, 0),
    "detailed_96": (96, 72, "detailed", True, 0),
    "detailed_128": (128, 96, "detailed", True, 0),
    "detailed_160": (160, 120, "detailed", True, 0),
    "detailed_192": (192, 144, "detailed", True, 0),
    "detailed_240": (240, 180, "detailed", True, 0),
    "detailed_320": (320, 240, "detailed", True, 0),
    "detailed_480": (480, 360, "detailed", True, 0),
    "detailed_480_selfcal": (480, 360, "detailed", False, 0),
    "detailed_320_static8": (320, 240, "detailed", True, 8),
}
# The smallest size at which SfM on the detailed scene passes every check for every tested seed
# (tests/test_colmap.py runs it): all cameras registered, rotation < 1 deg, centres < 1% of the
# rig size, median sparse-depth error < 3%.
SMALLEST_RELIABLE = (192, 144)


def write_variant(out: Path, width: int, height: int, texture: str = "detailed", seed: int = 0,
                  n_static: int = 0, supersample: int = 3) -> None:
    """One-frame scene (no videos; ``n_static`` static views) at ``out`` with the generator's ``texture``."""
    synthetic_scene.write_scene(out, seed=seed, n_frames=1, width=width, height=height, n_static_views=n_static,
                                supersample=supersample, video=False, texture=texture)


def similarity_align(est: np.ndarray, gt: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """est, gt: [K, 3, 4] c2w. Returns (s, R [3,3], t [3]) with gt ~ s R est + t, R det +1."""
    u, _, vt = np.linalg.svd(np.einsum("kij,klj->il", gt[:, :, :3], est[:, :, :3]))
    rot = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    xs, xd = est[:, :, 3] - est[:, :, 3].mean(0), gt[:, :, 3] - gt[:, :, 3].mean(0)
    s = float(np.sum(xd * (xs @ rot.T)) / np.sum(xs * xs))
    return s, rot, gt[:, :, 3].mean(0) - s * rot @ est[:, :, 3].mean(0)


def pose_errors(est: np.ndarray, gt: np.ndarray, sim=None, size: float | None = None) -> dict:
    """Per-camera rotation (deg) and centre errors (fraction of ``size``, default the rig size).

    sim: (s, R, t) to apply; default :func:`similarity_align` of est to gt.
    """
    s, rot, t = similarity_align(est, gt) if sim is None else sim
    rel = np.einsum("kji,kjl->kil", np.einsum("ij,kjl->kil", rot, est[:, :, :3]), gt[:, :, :3])
    ang = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    c = gt[:, :, 3]
    size = np.linalg.norm(c[:, None] - c[None], axis=-1).max() if size is None else size
    cerr = np.linalg.norm(s * est[:, :, 3] @ rot.T + t - c, axis=1) / size
    return {"sim": (s, rot, t), "size": float(size), "rot_err_deg": ang, "centre_err": cerr}


def depth_relerr(sp: SparseDepth, scale: float, gt_depth: list[np.ndarray]) -> np.ndarray:
    """[M] |s·depth − gt| / gt at each keypoint's pixel (gt_depth[k]: [H, W] of camera k)."""
    h, w = sp.hw
    col, row = np.clip(sp.x.astype(int), 0, w - 1), np.clip(sp.y.astype(int), 0, h - 1)
    gt = np.array([gt_depth[k][r, c] for k, r, c in zip(sp.cam_index, row, col, strict=True)])
    return np.abs(scale * sp.depth - gt) / gt


def _summary(err: dict, rel: np.ndarray, prefix: str = "") -> dict:
    return {f"{prefix}rot_err_deg_max": float(err["rot_err_deg"].max()),
            f"{prefix}centre_err_max": float(err["centre_err"].max()),
            f"{prefix}depth_relerr_median": float(np.median(rel)), f"{prefix}n_keypoints": int(len(rel))}


def _evaluate(capture: Path, gt, prefix: str = "", sim=None, size=None) -> tuple[dict, dict]:
    """Compare ``capture``'s SfM poses + colmap_depth.npz with its GT rig ``gt`` (read before SfM)."""
    est = load_poses_bounds(SceneDir(capture).poses)
    assert est.names == gt.names
    err = pose_errors(est.c2w, gt.c2w, sim, size)
    gt_depth = [np.load(SceneDir(capture).gt_depth(n))[0] for n in gt.names]
    rel = depth_relerr(load_sparse_depth(SceneDir(capture).sparse_depth), err["sim"][0], gt_depth)
    return err, {**_summary(err, rel, prefix), f"{prefix}registered": len(est), f"{prefix}focal_est": est.hwf[2]}


def run_variant(scene_dir: Path, focal_prior: bool, static: bool = False) -> dict:
    """Run both stages on a synthetic scene dir (its poses files are replaced) and measure.

    With ``static``, ``scene_dir/static`` is registered too (``--static_dir``) and judged
    with the video rig's similarity: both captures must come out in one world.
    """
    video, still = scene_dir, scene_dir / "static"
    gt = load_poses_bounds(SceneDir(video).poses)
    gt_still = load_poses_bounds(SceneDir(still).poses) if static else None
    argv = [str(video), "--overwrite", "1"]
    if static:
        argv += ["--static_dir", str(still)]
    if focal_prior:
        argv += ["--focal_prior", str(gt.hwf[2]), "--refine_focal", "0"]
        argv += ["--static_focal_prior", str(gt_still.hwf[2])] if static else []
    start = time.perf_counter()
    imgs2poses.main(argv)
    out = {"sfm_s": round(time.perf_counter() - start, 2), "n_cams": len(gt), "focal_gt": gt.hwf[2]}
    colmap2depth.main([str(video)])
    err, summary = _evaluate(video, gt)
    out.update(summary)
    if static:
        colmap2depth.main([str(still), "--sparse_dir", str(SceneDir(video).sparse_model), "--image_prefix", "static/"])
        out.update(_evaluate(still, gt_still, "static_", err["sim"], err["size"])[1], static_n_views=len(gt_still))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", type=int, nargs="*", default=[0], help="scene seeds (one line per variant and seed)")
    p.add_argument("--supersample", type=int, default=3, help="rays per pixel along each axis when rendering")
    args = p.parse_args()
    for name in args.only:
        for seed in args.seeds:
            print(json.dumps(bench_variant(name, seed, args.supersample)), flush=True)


def bench_variant(name: str, seed: int, supersample: int) -> dict:
    """One JSON line: write the variant's scene in a temp dir, run both stages, measure."""
    width, height, texture, prior, n_static = VARIANTS[name]
    line = {"bench": "sfm_accuracy", "variant": name, "seed": seed, "width": width, "height": height,
            "texture": texture, "supersample": supersample, "focal_prior_fixed": prior, "static_views": n_static,
            "machine": platform.machine(), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):  # stdout: JSON only
        scene = Path(tmp) / "scene"
        write_variant(scene, width, height, texture, seed, n_static, supersample)
        try:
            line.update(run_variant(scene, prior, static=n_static > 0))
        except UserError as exc:
            line["error"] = str(exc)
    return line


if __name__ == "__main__":
    main()

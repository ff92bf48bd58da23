"""The ceiling set by a scene's pixels: its test camera rendered from the training views with the TRUE depth.

Each test pixel is lifted to 3D at its ground-truth depth, projected into every training camera and sampled
there (bilinear) where that camera sees the same point (its own true depth agrees within 2 %); the samples
are averaged. No learned model has the geometry more right, so this PSNR is what resampling the training
pixels gives when only the texture is left to reconstruct: a scene whose texture is finer than its pixels
scores low here however good the geometry (a model can beat it a little by fusing the views' sub-pixel
offsets). Scored on pixels that never move (ground-truth depth constant over the frames) and on all seen.

Usage: python -m bench.oracle_ibr [--scenes NAME ...] [--workdir data/quality_family]
One JSON line per family scene: psnr_static, psnr_seen, coverage (fraction of test pixels some view sees).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from bench.quality import BY_NAME, FAMILY, ROOT, ensure_scene
from core.errors import UserError
from dataLoader.dataset import VideoDataset
from engine import options
from engine.cli import run_main
from engine.depth_consistency import lift, project
from engine.evaluation.evaluate import load_gt_depth
from engine.option_groups import data_options

VISIBLE_REL = 0.02  # a view sees the point when its own true depth there is within 2 % of the point's


def warp_from(depth: np.ndarray, c2w_dst: np.ndarray, c2w_src: np.ndarray, focal: float, image_src: np.ndarray,
              depth_src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Colours of the destination camera's pixels, sampled from a source view at the true geometry.

    depth, depth_src: [H, W] camera-axis z (world units) of the destination / source view; c2w_*: [3, 4]
    camera-to-world, OpenGL axes [right, up, backwards]; image_src: [H, W, 3] float.
    Returns colour [H, W, 3] (bilinear) and visible [H, W] bool (inside the source image and not occluded).
    """
    h, w = depth.shape
    x, y, z = project(lift(depth, c2w_dst, focal), c2w_src, focal, (h, w))
    u, v = (x.reshape(h, w) - 0.5).astype(np.float32), (y.reshape(h, w) - 0.5).astype(np.float32)  # for remap
    z = z.reshape(h, w)
    colour = cv2.remap(image_src.astype(np.float32), u, v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    z_src = cv2.remap(depth_src.astype(np.float32), u, v, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
    inside = (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)  # all four bilinear taps in the image
    visible = inside & (z > 0) & (np.abs(z_src - z) < VISIBLE_REL * z)
    return colour, visible


def oracle_scores(datadir: Path, config: str) -> dict:
    """True-depth image-based rendering of the scene's test camera -> PSNRs and coverage (module doc)."""
    data = VideoDataset(data_options(options.resolve(options.parse(["--config", config, "--datadir",
                                                                   str(datadir)]))))
    t_all = data.n_frames

    def depth_of(k: int) -> np.ndarray:
        depth = load_gt_depth(datadir, data.cam_names[k], 0, t_all, (data.h, data.w))
        if depth is None:
            raise UserError(f"{datadir}: no gt_depth for {data.cam_names[k]} (a synthetic scene is needed)")
        return depth

    k0 = data.test_idx[0]
    depth0, gt = depth_of(k0), data.frames_of(k0).astype(np.float32) / 255.0  # [T, H, W], [T, H, W, 3]
    total, count = np.zeros_like(gt), np.zeros(gt.shape[:3])
    for k in data.train_idx:
        depth_k, frames_k = depth_of(k), data.frames_of(k).astype(np.float32) / 255.0
        for t in range(t_all):
            colour, visible = warp_from(depth0[t], data.rig.c2w[k0], data.rig.c2w[k], data.focal, frames_k[t],
                                        depth_k[t])
            total[t][visible] += colour[visible]
            count[t][visible] += 1
    seen = count > 0
    err = ((total / np.maximum(count, 1)[..., None] - gt) ** 2).mean(-1)  # [T, H, W]
    still = seen & (np.ptp(depth0, axis=0) < 1e-5)[None]
    return {"psnr_static": float(-10 * np.log10(err[still].mean())),
            "psnr_seen": float(-10 * np.log10(err[seen].mean())), "coverage": float(seen.mean())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", nargs="+", default=[s.name for s in FAMILY], choices=sorted(BY_NAME))
    p.add_argument("--workdir", type=Path, default=ROOT / "data" / "quality_family")
    p.add_argument("--config", default="configs/demo.txt", help="config whose data options load the scene")
    args = p.parse_args()
    for name in args.scenes:
        datadir = ensure_scene(BY_NAME[name], args.workdir / "scenes")
        print(json.dumps({"scene": name, **oracle_scores(datadir, args.config)}), flush=True)


if __name__ == "__main__":
    run_main(main)  # a user error (e.g. a scene without gt_depth) ends in one line

"""Does depth supervision help a few-camera rig? (a) no depth, (b) sparse "COLMAP" depth, (c) static-model depth.

A synthetic scene with 3 training cameras + the test camera (cam00, the rig centre) and a dense
static capture (default 16 views) is written; a static model is trained on the capture
(prepare_static -> train --static_only 1 -> static_model2depth) and the three dynamic runs train
for the same number of iterations. One JSON line per stage/run: test-camera PSNR, SSIM, depth
AbsRel / RMSE / delta<1.25 against gt_depth (all pixels and frames, and static pixels only), and a
PNG with the test camera's depth maps side by side (GT | a | b | c, frame 0).

(b) uses a keypoint table in the ``colmap_depth.npz`` format built from the ground truth
(``synthetic.keypoints``: FAST corners of each training camera's first frame, depth read
from gt_depth there, static points only, synthetic reprojection errors). imgs2poses.py /
colmap2depth.py are not run: on this smooth-textured 64x48 scene SfM registers no model
(BENCHMARKS.md, SfM section), and a model would put the rig in COLMAP's world, not the ground truth's.

Usage: python -m bench.depth_gain [--iters 400] [--static_iters 400] [--width 64 --height 48]
       [--workdir DIR] [--reuse 1] [--runs a b c] [--depth_config configs/depth/static_model.txt]
BENCHMARKS.md used --static_iters 500 --iters 600: 197 s on 2 idle cores (the defaults take less).
On the benchmark family (six scenes, the demo configs) the same comparison is
``python -m bench.quality --depth_gain`` (static export, then the dynamic run without and with depth).
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from dataLoader.depth_files import load_dense_depth, save_depth_table
from dataLoader.scene_layout import SceneDir
from engine import options
from engine.evaluation.evaluate import load_gt_depth
from engine.evaluation.metrics import depth_metrics, evaluate_video
from engine.evaluation.visualize import colorize_depth, save_png
from engine.render.frames import render_pose
from engine.render.static_depth import export_depth_file, prepare_static_capture
from engine.train.trainer import Trainer
from synthetic.keypoints import gt_keypoint_table
from synthetic.scene import make_scene, render_view, write_scene

ROOT = Path(__file__).resolve().parents[1]

# Dynamic runs: a small MixVoxels for CPU minutes (schedule scaled by --iters).
MODEL = ["--n_variation_iters", "100", "--n_lamb_sigma", "8", "4", "4", "--n_lamb_sh", "16", "8", "8",
         "--n_lamb_sigma_dynamic", "8", "4", "4", "--n_lamb_sh_dynamic", "16", "8", "8",
         "--featureC", "64", "--featureD", "64", "--static_featureC", "64",
         "--N_voxel_init", str(32 ** 3), "--N_voxel_final", str(64 ** 3)]
# The static model: the same grids with more density components and a higher grid learning rate
# (median depth error at the video cameras 1.4-1.9 % vs 5.5 % with the dynamic runs' settings).
STATIC_MODEL = ["--n_lamb_sigma", "16", "4", "4", "--lr_init", "0.04"]
RUN_DEPTH = {"a": [], "b": ["--depth_config", "configs/depth/colmap.txt"], "c": None}


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def schedule(iters: int) -> list[str]:
    up = [max(1, int(iters * f)) for f in (0.15, 0.3, 0.45)]
    return ["--n_iters", str(iters), "--upsamp_list", *map(str, up),
            "--update_AlphaMask_list", str(int(iters * 0.4))]


def train(args, datadir: Path, expname: str, extra: list[str]) -> Trainer:
    argv = ["--datadir", str(datadir), "--basedir", str(args.workdir / "runs"), "--expname", expname,
            "--overwrite", "1", "--device", args.device, "--seed", str(args.seed), "--render_test", "0",
            "--save_every", "1000000", "--batch_size", str(args.batch_size), "--scene_box", "-1.5", "-1.5", "-1",
            *MODEL, *extra]
    trainer = Trainer(options.resolve(options.parse(argv)))
    trainer.fit()
    return trainer


def static_depth_quality(scene: Path, depth_file: Path, seed: int) -> dict:
    """Exported maps vs the static world's exact depth at those cameras (moving objects removed)."""
    meta = json.loads((scene / "meta.json").read_text())
    world = make_scene(seed, meta["n_frames"], meta["rig"]).without_moving()
    with np.load(depth_file) as f:
        depth, mask, c2w, (h, w) = f["depth"], f["mask"], f["c2w"], f["hw"]
    hwf = (h, w, meta["focal"] * w / meta["width"])
    gt = np.stack([render_view(world, c, hwf, 0, supersample=1)[1] for c in c2w])
    rel = np.abs(depth - gt)[mask] / gt[mask]
    return {"median_rel_err": float(np.median(rel)), "abs_rel": float(rel.mean()), "coverage": float(mask.mean())}


def depth_ratio_halves(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> dict:
    """Median rendered / true depth on the masked pixels nearer and farther than their median true depth
    (pred, gt, mask: [T, H, W]): a surface drawn too near reads < 1 (a floater haze: both halves < 1; a
    scene flattened toward one depth: near > 1, far < 1)."""
    g, ratio = gt[mask], pred[mask] / np.maximum(gt[mask], 1e-9)
    split = np.median(g)
    return {"near": float(np.median(ratio[g <= split])), "far": float(np.median(ratio[g > split]))}


def evaluate_test(trainer: Trainer) -> tuple[dict, np.ndarray]:
    data, k = trainer.data, trainer.data.test_idx[0]
    model = trainer.model.eval()
    r = render_pose(model, data.c2w[k], data.h, data.w, data.focal, data.normalization, trainer.device)
    gt = data.frames_of(k).astype(np.float32) / 255.0
    m = evaluate_video(r.rgb, gt, device=trainer.device)
    gt_depth = load_gt_depth(data.opts.datadir, data.cam_names[k], data.opts.frame_start, gt.shape[0],
                             (data.h, data.w))
    static = np.broadcast_to(np.ptp(gt_depth, axis=0) < 1e-5, gt_depth.shape)
    out = {"psnr": m["psnr"], "ssim": m["ssim"], "depth": depth_metrics(r.depth, gt_depth),
           "depth_static_pixels": depth_metrics(r.depth, gt_depth, static),
           "depth_ratio_static": depth_ratio_halves(r.depth, gt_depth, static),
           "train_time_s": round(trainer.elapsed, 1), "iterations": trainer.step}
    return out, r.depth[0]


def depth_panel(maps: dict[str, np.ndarray], out_png: Path) -> None:
    """Side-by-side colourised disparity (shared range) with labels."""
    gt = maps["gt"]
    lo, hi = np.percentile(1 / gt[gt > 0], [1, 99])
    tiles = []
    for name, d in maps.items():
        tile = colorize_depth(d, vmin=lo, vmax=hi, inverse=True)
        tile = cv2.resize(tile, (tile.shape[1] * 3, tile.shape[0] * 3), interpolation=cv2.INTER_NEAREST)
        cv2.putText(tile, name, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    save_png(out_png, np.concatenate(tiles, axis=1))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=None, help="keep everything here (default: a temp dir)")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--height", type=int, default=48)
    p.add_argument("--n_frames", type=int, default=8)
    p.add_argument("--n_static_views", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iters", type=int, default=400, help="iterations of each dynamic run")
    p.add_argument("--static_iters", type=int, default=400, help="iterations of the static model")
    p.add_argument("--batch_size", type=int, default=1024)
    p.add_argument("--runs", nargs="+", default=["a", "b", "c"], choices=["a", "b", "c"])
    p.add_argument("--depth_config", default="configs/depth/static_model.txt", help="overlay of run (c)")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="train.py flags for every dynamic run")
    p.add_argument("--png", type=Path, default=None, help="depth panel (default WORKDIR/depth_gain.png)")
    p.add_argument("--reuse", type=int, default=0, help="1: reuse WORKDIR's scene and static model")
    p.add_argument("--device", default="cpu")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="depth_gain_") as tmp:
        args.workdir = (args.workdir or Path(tmp)).resolve()
        run(args)


def static_stage(args, scene: Path, depth_file: Path) -> None:
    """Scene, static capture -> static model -> depth maps at the training cameras."""
    write_scene(scene, seed=args.seed, n_cams=4, n_frames=args.n_frames, width=args.width, height=args.height,
                n_static_views=args.n_static_views, supersample=2, video=False, overwrite=True)
    prepare_static_capture(scene / "static")
    static = train(args, scene / "static", "static", ["--static_only", "1", "--test_cams", *STATIC_MODEL,
                                                      *schedule(args.static_iters)])
    export_depth_file(static.run_dir / "ckpt.pt", scene, depth_file, overwrite=True, device=args.device)
    emit({"stage": "static_model", "views": len(static.data.cam_names), "iterations": static.step,
          "train_time_s": round(static.elapsed, 1),
          "depth_at_video_cams": static_depth_quality(scene, depth_file, args.seed)})


def run(args) -> None:
    t0 = time.perf_counter()
    scene = args.workdir / "scene"
    depth_file = SceneDir(scene).dense_depth
    if not (args.reuse and depth_file.is_file()):
        static_stage(args, scene, depth_file)
    dense = load_dense_depth(depth_file)
    table = gt_keypoint_table(scene, list(dense.cam_names), dense.hw, 200, args.seed)
    save_depth_table(SceneDir(scene).sparse_depth, table)
    maps = {"gt": np.load(SceneDir(scene).gt_depth("cam00"))[0]}
    labels = {"a": "a: no depth", "b": "b: sparse (GT corners)", "c": "c: static model"}
    for key in args.runs:
        extra = ["--depth_config", args.depth_config] if key == "c" else RUN_DEPTH[key]
        trainer = train(args, scene, f"run_{key}", [*schedule(args.iters), *extra, *args.extra])
        metrics, depth0 = evaluate_test(trainer)
        maps[labels[key]] = depth0
        line = {"run": key, "what": labels[key], **metrics}
        if key == "b":
            line["sparse_source"] = (f"gt_corners: {len(table['depth'])} FAST corners of frame 0 on static pixels, "
                                     "depth from gt_depth, synthetic reprojection errors (not an SfM run)")
        emit(line)
    png = args.png or args.workdir / "depth_gain.png"
    depth_panel(maps, png)
    emit({"summary": True, "png": str(png), "total_s": round(time.perf_counter() - t0, 1),
          "machine": platform.processor() or platform.machine(), "cpu_threads": torch.get_num_threads(),
          "torch": torch.__version__, "iters": args.iters, "static_iters": args.static_iters,
          "size": [args.width, args.height], "n_frames": args.n_frames, "static_views": args.n_static_views})


if __name__ == "__main__":
    main()

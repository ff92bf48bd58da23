"""Evaluation time of one test camera (render + PSNR/SSIM/depth + pictures) at a given size.

Builds (once, under --scene) a synthetic scene with --cams cameras of --size W H x --frames frames
(``--distinct_frames`` rendered, each held for frames / distinct frames, as in bench/gpu_check.py), trains
--iters iterations of a small model (48^3 grid) and times ``evaluate_cameras`` on the test camera.
Prints one JSON line (seconds, peak RSS). Usage:
python -m bench.eval_speed [--size 640 480] [--frames 150] [--scene data/eval_bench] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import torch

from bench.gpu_check import build_scene
from dataLoader.scene_layout import SceneDir
from engine import options
from engine.evaluation.evaluate import evaluate_cameras
from engine.train.trainer import Trainer

SMALL_MODEL = ["--N_voxel_init", str(48 ** 3), "--N_voxel_final", str(48 ** 3), "--upsamp_list",
               "--update_AlphaMask_list", "--n_lamb_sigma", "4", "2", "2", "--n_lamb_sh", "8", "4", "4",
               "--n_lamb_sigma_dynamic", "4", "2", "2", "--n_lamb_sh_dynamic", "8", "4", "4",
               "--featureC", "32", "--featureD", "32", "--static_featureC", "32", "--n_variation_iters", "2",
               "--batch_size", "1024", "--render_test", "0"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scene", default="data/eval_bench")
    p.add_argument("--size", type=int, nargs=2, default=[640, 480], metavar=("W", "H"))
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--cams", type=int, default=3)
    p.add_argument("--distinct_frames", type=int, default=6)
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--device", default="cpu")
    args, rest = p.parse_known_args()
    root = Path(args.scene)
    scene = root / "scene"
    if not (SceneDir(scene).poses).is_file():
        scene = build_scene(root, args.cams, args.frames, args.distinct_frames, *args.size)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = options.resolve(options.parse(["--datadir", str(scene.resolve()), "--basedir", tmp, "--expname", "eval",
                                     "--n_iters", str(args.iters), "--device", args.device, *SMALL_MODEL, *rest]))
        trainer = Trainer(cfg)
        trainer.fit()
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
        t0 = time.perf_counter()
        evaluate_cameras(trainer.model.eval(), trainer.data, trainer.device, Path(tmp) / "test", n_images=2)
        seconds = time.perf_counter() - t0
    print(json.dumps({"bench": "eval_camera", "size": args.size, "frames": args.frames, "seconds": round(seconds, 1),
                      "peak_rss_gib_before": round(rss0, 2),
                      "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2),
                      "samples_per_ray": trainer.model.n_samples, "device": str(trainer.device),
                      "cpu_threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
                      "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()

"""Rendering speed from a checkpoint: a training camera's video and a spiral path, at a given size.

Prints one JSON line per measurement (best of ``--repeats``) and a summary line. "rays_per_s" counts
pixels rendered per second; for a camera video each ray yields all T frames at once
(``ray_frames_per_s`` = rays/s x T), for a path each pose keeps one frame of its rays.
Usage: python -m bench.render_speed --ckpt log/demo/ckpt.pt [--size 96 72] [--device cpu]
(``make demo`` writes that checkpoint).
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from engine.checkpoint import load_model
from engine.render.camera_paths import make_path
from engine.render.frames import iter_camera_frames, iter_path_frames, model_frames
from engine.train.setup import pick_device


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", default="log/demo/ckpt.pt")
    p.add_argument("--size", type=int, nargs=2, default=[96, 72], metavar=("W", "H"))
    p.add_argument("--cam_num", type=int, default=0)
    p.add_argument("--n_views", type=int, default=8, help="spiral poses timed")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    device = pick_device(args.device)
    model, norm, state = load_model(args.ckpt, device)
    cams = state["extra"]["cameras"]
    w, h = args.size
    focal = float(cams["focal"]) * w / cams["hw"][1]
    n_t = model_frames(model)
    c2w = np.asarray(cams["c2w"][args.cam_num])

    def camera():
        for _ in iter_camera_frames(model, c2w, h, w, focal, norm, device, list(range(n_t)), progress=False):
            pass

    path = make_path("spiral", cams, args.n_views, (0, n_t))

    def spiral():
        for _ in iter_path_frames(model, path, h, w, focal, norm, device, progress=False):
            pass

    camera()  # warm-up (allocator, kernels)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    results = {}
    for name, fn, n_frames, n_rays in (("camera_video", camera, n_t, h * w),
                                       ("spiral_path", spiral, len(path), len(path) * h * w)):
        s = best_time(lambda fn=fn: (fn(), sync()), args.repeats)
        rec = {"bench": name, "size": [w, h], "frames": n_frames, "seconds": round(s, 3),
               "frames_per_s": round(n_frames / s, 3), "rays_per_s": round(n_rays / s, 1)}
        if name == "camera_video":
            rec["ray_frames_per_s"] = round(n_rays * n_t / s, 1)
        results[name] = rec
        print(json.dumps(rec), flush=True)
    print(json.dumps({"summary": True, "device": str(device), "cpu_threads": torch.get_num_threads(),
                      "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
                      "ckpt": str(args.ckpt), "iteration": state["step"], "n_frames": n_t,
                      "samples_per_ray": model.n_samples, "resolution": model.resolution,
                      "alpha_mask": model.alpha_mask is not None,
                      **{f"{k}_frames_per_s": v["frames_per_s"] for k, v in results.items()}}), flush=True)


if __name__ == "__main__":
    main()

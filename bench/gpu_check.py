"""One-command GPU check: synthetic N3DV-like scene -> MixVoxels-T training -> test-camera render + evaluation.

With CUDA (default sizes): 20 cameras x 300 frames at 676x507 (``--distinct_frames`` rendered frames, each
held for 300 / distinct frames, so the scene builds in seconds), ``--iters`` iterations of the
``configs/base/T.txt`` schedule at batch 4096 with mixed precision (``--amp -1``: on), then the test camera
(cam00) is rendered and evaluated. Target on an H100/H200: under 8 minutes in all. Without CUDA the same
command runs a tiny size (4 cameras x 8 frames, 64x48, small grids; under 2 minutes on 2 cores).
Every size flag overrides the device's default. Prints one JSON object (device, versions, iterations/s,
rays/s, peak GPU memory, test PSNR, render frames/s, amp). A machine with a GPU runs, from the repo root::

    python -m bench.gpu_check && python -m pytest -m gpu
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from dataLoader.scene_layout import SceneDir, image_files
from engine import options
from engine.cli import run_main
from engine.evaluation.evaluate import evaluate_camera
from engine.precision import device_name
from engine.render.frames import RenderSettings, iter_camera_frames
from engine.train.setup import pick_device
from engine.train.trainer import Trainer
from synthetic.scene import write_scene

ROOT = Path(__file__).resolve().parents[1]

# (cameras, frames, distinct frames, width, height, iterations) per device type
SIZES = {"cuda": (20, 300, 6, 676, 507, 1500), "cpu": (4, 8, 2, 64, 48, 30)}
# The demo scene's box; on CPU also grids and heads small enough for a 2-core machine.
SCENE_FLAGS = ["--scene_box", "-1.5", "-1.5", "-1.0", "--test_cams", "0"]
CPU_MODEL = ["--N_voxel_init", str(32 ** 3), "--N_voxel_final", str(48 ** 3), "--upsamp_list", "10", "20",
             "--update_AlphaMask_list", "15", "--featureC", "32", "--featureD", "32", "--static_featureC", "32",
             "--n_lamb_sigma", "4", "2", "2", "--n_lamb_sh", "8", "4", "4", "--n_lamb_sigma_dynamic", "4", "2", "2",
             "--n_lamb_sh_dynamic", "8", "4", "4", "--n_variation_iters", "20", "--batch_size", "1024"]


def build_scene(root: Path, n_cams: int, n_frames: int, distinct: int, w: int, h: int) -> Path:
    """A ``n_frames`` scene whose frame t shows rendered frame t * distinct // n_frames (symlinked PNGs)."""
    write_scene(root / "rendered", n_cams=n_cams, n_frames=distinct, width=w, height=h, n_static_views=0,
                supersample=1, video=False, overwrite=True)
    scene = root / "scene"
    shutil.rmtree(scene, ignore_errors=True)
    SceneDir(scene).frames.mkdir(parents=True)
    rendered = SceneDir(root / "rendered")
    for name in (rendered.poses, rendered.camera_names):
        shutil.copy(name, scene / name.name)
    for cam in sorted(rendered.frames.iterdir()):
        files = image_files(cam)
        (SceneDir(scene).frames / cam.name).mkdir(parents=True)
        for t in range(n_frames):
            # absolute targets: a relative root would make every link dangle from inside frames/camXX/
            (SceneDir(scene).frames / cam.name / f"{t:04d}.png").symlink_to(files[t * distinct // n_frames].resolve())
    return scene


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto, cuda, cpu ...")
    p.add_argument("--amp", type=int, default=-1, choices=(-1, 0, 1), help="mixed precision (-1: on for CUDA)")
    p.add_argument("--n_cams", type=int, help="cameras (cam00 is the test camera)")
    p.add_argument("--n_frames", type=int, help="frames T")
    p.add_argument("--distinct_frames", type=int, help="rendered frames (each held for T / distinct frames)")
    p.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), help="image size")
    p.add_argument("--iters", type=int, help="training iterations of the schedule")
    p.add_argument("--workdir", default="", help="keep the scene and run here (default: a temporary folder)")
    args, rest = p.parse_known_args()
    args.extra = rest  # further training flags, e.g. --batch_size 8192
    return args


def run(args: argparse.Namespace, work: Path) -> dict:
    device = pick_device(args.device)
    cams, frames, distinct, w, h, iters = SIZES["cuda" if device.type == "cuda" else "cpu"]
    cams, frames, distinct = args.n_cams or cams, args.n_frames or frames, args.distinct_frames or distinct
    (w, h), iters = args.size or (w, h), args.iters or iters
    t0 = time.perf_counter()
    scene = build_scene(work, cams, frames, min(distinct, frames), w, h)
    argv = ["--base_config", str(ROOT / "configs/base/T.txt"), "--datadir", str(scene), "--basedir", str(work),
            "--expname", "run", "--overwrite", "1", "--device", str(device), "--amp", str(args.amp),
            "--n_iters", str(iters), "--save_every", str(10 ** 9), "--progress_refresh_rate", "100",
            "--render_test", "0", "--vis_every", "0",  # no periodic test renders inside the timed training
            *SCENE_FLAGS, *([] if device.type == "cuda" else CPU_MODEL), *args.extra]
    trainer = Trainer(options.resolve(options.parse(argv)))
    data = trainer.data
    scene_s = time.perf_counter() - t0
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    t1 = time.perf_counter()
    trainer.warmup_variation()
    trainer.variation_ready = True
    sync()
    warmup_s = time.perf_counter() - t1
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    t2 = time.perf_counter()
    trainer.fit()
    sync()
    train_s = time.perf_counter() - t2
    train_peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if cuda else None
    model, k = trainer.model.eval(), data.test_idx[0]
    settings = RenderSettings(trainer.precision, trainer.cfg.render_budget_mb)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    t3 = time.perf_counter()
    for _ in iter_camera_frames(model, data.c2w[k], h, w, data.focal, data.normalization, device, range(frames),
                                progress=False, settings=settings):
        pass
    sync()
    render_s = time.perf_counter() - t3
    t4 = time.perf_counter()
    metrics, _ = evaluate_camera(model, data, k, device, settings=settings)
    eval_s = time.perf_counter() - t4
    return {
        "device": device_name(device), "torch": torch.__version__, "cuda": torch.version.cuda,
        "machine": platform.processor() or platform.machine(), "cpu_threads": torch.get_num_threads(),
        "amp": trainer.precision.enabled, "precision": trainer.precision.describe(),
        "scene": {"cameras": cams, "frames": frames, "distinct_frames": distinct, "size": [w, h]},
        "iterations": iters, "batch_size": trainer.cfg.batch_size, "train_s": round(train_s, 1),
        "iterations_per_s": round(iters / train_s, 3), "rays_per_s": round(iters * trainer.cfg.batch_size / train_s),
        "variation_warmup_s": round(warmup_s, 1), "scene_setup_s": round(scene_s, 1),
        "peak_gpu_memory_gib": None if train_peak is None else round(train_peak, 2),
        "peak_gpu_memory_render_gib": round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2) if cuda else None,
        "final_resolution": model.resolution, "samples_per_ray": model.n_samples,
        "test_psnr": round(metrics["psnr"], 3), "test_ssim": round(metrics["ssim"], 4),
        "render_s": round(render_s, 1), "render_frames_per_s": round(frames / render_s, 2),
        "render_rays_per_s": round(w * h / render_s), "evaluation_s": round(eval_s, 1),
    }


def main() -> None:
    args = parse_args()
    Path(args.workdir or ".").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.workdir:
        result = run(args, Path(args.workdir))
    else:
        with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
            result = run(args, Path(tmp))
    result["total_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    run_main(main)

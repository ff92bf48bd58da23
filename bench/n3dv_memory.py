"""Host memory at N3DV scale: preprocess + 50 training iterations on a 20-camera, 300-frame, 1352x1014 scene.

The scene is synthetic and cheap to make: ``--n_distinct`` frames per camera are rendered
(``synthetic.scene``) and hard-linked to fill the 300 frame names, so the cache build
still decodes 6,000 full-size PNGs (the realistic cost) but the scene takes little disk.

Memory is **peak anonymous RSS** (``RssAnon`` of /proc/self/status: heap, numpy/torch buffers),
sampled every ``--sample_ms`` by a background thread -- not VmHWM/ru_maxrss, which also count the
memory-mapped cache's page-cache pages that the kernel can drop at any time. Sampling can miss a
spike shorter than the interval; VmHWM (an upper bound incl. file pages) is printed beside it.

Prints JSON lines (scene, preprocess, train, summary with the published code's estimate).
The ~25 GB cache is deleted at the end (``--keep_cache 1`` to keep), the scene too unless
``--keep_scene 1``. Usage: python -m bench.n3dv_memory [--workdir /tmp/n3dv_bench] [--n_iters 50]
"""
from __future__ import annotations

import argparse
import json
import mmap
import os
import platform
import shutil
import threading
import time
from pathlib import Path

import torch

from dataLoader.dataset import VideoDataset
from dataLoader.scene_layout import SceneDir
from engine import options
from engine.option_groups import data_options
from engine.train.trainer import Trainer
from synthetic.scene import write_scene

GIB = 1024 ** 3


def proc_status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


class AnonPeak:
    """Background sampler of RssAnon; ``peak_gib()`` since the last ``reset()``."""

    def __init__(self, interval_s: float):
        self.interval, self.peak_kb, self._stop = interval_s, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, proc_status_kb("RssAnon"))
            time.sleep(self.interval)

    def reset(self) -> None:
        self.peak_kb = proc_status_kb("RssAnon")

    def peak_gib(self) -> float:
        self.peak_kb = max(self.peak_kb, proc_status_kb("RssAnon"))
        return round(self.peak_kb / 1024 ** 2, 3)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def is_memory_mapped(a) -> bool:
    while a is not None:
        if isinstance(a, mmap.mmap):
            return True
        a = getattr(a, "base", None)
    return False


def make_scene(out: Path, n_cams: int, n_frames: int, width: int, height: int, n_distinct: int) -> None:
    """Render n_distinct frames per camera, then hard-link them to n_frames names (blocks in order)."""
    write_scene(out, n_cams=n_cams, n_frames=n_distinct, width=width, height=height, n_static_views=0,
                supersample=1, video=False)
    shutil.rmtree(SceneDir(out).gt_depth_dir)  # ground truth for n_distinct frames only: not this scene's
    for cam in sorted(SceneDir(out).frames.iterdir()):
        for t in reversed(range(n_frames)):
            src, dst = cam / f"{t * n_distinct // n_frames:04d}.png", cam / f"{t:04d}.png"
            if dst != src:
                dst.unlink(missing_ok=True)
                os.link(src, dst)


def train_config(datadir: Path, basedir: Path, args, rest: list[str]):
    root = Path(__file__).resolve().parents[1]
    return options.resolve(options.parse([
        "--base_config", str(root / "configs/base/T.txt"), "--datadir", str(datadir), "--basedir", str(basedir),
        "--expname", "n3dv_memory", "--overwrite", "1", "--device", args.device, "--n_iters", str(args.n_iters),
        "--batch_size", "4096", "--N_voxel_init", str(args.grid ** 3), "--N_voxel_final", str(args.grid ** 3),
        "--upsamp_list", "--update_AlphaMask_list", "--n_variation_iters", str(args.variation_iters),
        "--render_test", "0", "--save_every", "100000", "--progress_refresh_rate", "10", *rest]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default="/tmp/n3dv_bench", help="scene and run go here (~25 GB while running)")
    p.add_argument("--n_cams", type=int, default=20)
    p.add_argument("--n_frames", type=int, default=300)
    p.add_argument("--width", type=int, default=1352)
    p.add_argument("--height", type=int, default=1014)
    p.add_argument("--n_distinct", type=int, default=3, help="distinct rendered frames per camera")
    p.add_argument("--n_iters", type=int, default=50)
    p.add_argument("--grid", type=int, default=64, help="grid resolution (voxels per axis)")
    p.add_argument("--variation_iters", type=int, default=20)
    p.add_argument("--device", default="auto")
    p.add_argument("--sample_ms", type=float, default=10.0)
    p.add_argument("--keep_cache", type=int, default=0)
    p.add_argument("--keep_scene", type=int, default=0)
    args, rest = p.parse_known_args()
    work = Path(args.workdir)
    scene = work / "scene"
    peak = AnonPeak(args.sample_ms / 1000)
    out = {"machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
           "torch": torch.__version__, "torch_threads": torch.get_num_threads()}

    t0 = time.perf_counter()
    if not SceneDir(scene).poses.is_file():
        make_scene(scene, args.n_cams, args.n_frames, args.width, args.height, args.n_distinct)
    print(json.dumps({"stage": "scene", "s": round(time.perf_counter() - t0, 1), "dir": str(scene)}), flush=True)

    cfg = train_config(scene, work / "runs", args, rest)
    shutil.rmtree(SceneDir(scene).cache, ignore_errors=True)
    peak.reset()
    t0 = time.perf_counter()
    data = VideoDataset(data_options(cfg))
    prep = {"stage": "preprocess", "s": round(time.perf_counter() - t0, 1),
            "peak_rss_anon_gib": peak.peak_gib(), "cache_gib": round(data.cache.frames.nbytes / GIB, 2),
            "frames_memory_mapped": is_memory_mapped(data.cache.frames), "n_train_rays": data.n_train_rays}
    print(json.dumps(prep), flush=True)
    del data

    peak.reset()
    t0 = time.perf_counter()
    trainer = Trainer(cfg)
    init_s = time.perf_counter() - t0
    trainer.fit()
    train = {"stage": "train", "init_s": round(init_s, 1), "iterations": trainer.step,
             "iteration_s": round(trainer.elapsed / max(trainer.step, 1), 3),
             "peak_rss_anon_gib": peak.peak_gib(), "device": str(trainer.device),
             "grid": trainer.model.resolution, "samples_per_ray": trainer.model.n_samples}
    print(json.dumps(train), flush=True)

    n_rays, t = trainer.data.n_train_rays, trainer.data.n_frames
    hwt3 = trainer.data.h * trainer.data.w * t * 3
    published = {"all_rgbs_fp16_gib": round(n_rays * t * 3 * 2 / GIB, 1),
                 "all_rgbs_fp16_gib_20_train_cams": round(20 * hwt3 * 2 / GIB, 1),
                 "per_camera_fp32_transient_gib": round(hwt3 * 4 / GIB, 1),
                 "estimated_peak_gib": round((n_rays * t * 3 * 2 + hwt3 * 4) / GIB, 1),
                 "basis": "all_rgbs [N_rays, T, 3] fp16 in host RAM + one camera's fp32 [H*W, T, 3] while loading"}
    summary = {"summary": True, **out, "cameras": args.n_cams, "frames": t, "size": [args.width, args.height],
               "preprocess_s": prep["s"], "iteration_s": train["iteration_s"],
               "peak_rss_anon_gib": max(prep["peak_rss_anon_gib"], train["peak_rss_anon_gib"]),
               "vm_hwm_gib_incl_page_cache": round(proc_status_kb("VmHWM") / 1024 ** 2, 2),
               "limit_gib": 8, "published_estimate": published,
               "method": f"RssAnon from /proc/self/status sampled every {args.sample_ms:g} ms"}
    peak.stop()
    print(json.dumps(summary), flush=True)
    del trainer
    if not args.keep_cache:
        shutil.rmtree(SceneDir(scene).cache, ignore_errors=True)
    if not args.keep_scene:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

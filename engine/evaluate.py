"""Test-camera evaluation: render, metrics on raw float renders, pictures, metrics.json."""
from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

import cv2
import numpy as np

from dataLoader.video_io import write_video
from engine.metrics import depth_metrics, evaluate_video
from engine.render import CameraRender, render_pose
from engine.visualize import colorize_depth, error_heatmap, plot_per_frame, save_png

log = logging.getLogger(__name__)


def load_gt_depth(datadir: Path, cam: str, frame_start: int, n_frames: int, hw) -> np.ndarray | None:
    """gt_depth/<cam>.npy [T_all, H0, W0] world-unit camera z -> [T, H, W] at hw (nearest), or None."""
    path = Path(datadir) / "gt_depth" / f"{cam}.npy"
    if not path.is_file():
        return None
    depth = np.load(path, mmap_mode="r")[frame_start:frame_start + n_frames]
    if depth.shape[1:] != tuple(hw):
        depth = np.stack([cv2.resize(np.asarray(d), (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST)
                          for d in depth])
    return np.asarray(depth, dtype=np.float32)


def json_safe(obj):
    """Numpy arrays/scalars -> lists/floats; non-finite floats -> None."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in np.asarray(obj).tolist()] if isinstance(obj, np.ndarray) \
            else [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def save_camera_pictures(out_dir: Path, cam: str, render: CameraRender, gt: np.ndarray, n_images: int) -> None:
    """PNG frames (render | gt | error), colourised depth, and the test video."""
    n_t = render.rgb.shape[0]
    for t in np.unique(np.linspace(0, n_t - 1, max(1, n_images)).round().astype(int)):
        pred = (render.rgb[t] * 255).round().astype(np.uint8)
        panel = np.concatenate([pred, gt[t], error_heatmap(render.rgb[t], gt[t] / 255.0)], axis=1)
        save_png(out_dir / f"{cam}_frame{t:04d}.png", panel)
        save_png(out_dir / f"{cam}_depth{t:04d}.png", colorize_depth(render.depth[t], inverse=True))
    save_png(out_dir / f"{cam}_static.png", (render.static_rgb * 255).round().astype(np.uint8))
    write_video(out_dir / f"{cam}_rgb.mp4", (render.rgb * 255).round().astype(np.uint8), fps=30)


def evaluate_cameras(model, data, device, out_dir: Path, n_images: int = 3) -> dict:
    """Render every test camera of ``data``; returns {camera: metrics} and writes pictures to out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for k in data.test_idx:
        cam = data.cam_names[k]
        render = render_pose(model, data.c2w[k], data.h, data.w, data.focal, data.normalization, device)
        gt = data.frames_of(k)
        if render.rgb.shape[0] != gt.shape[0]:  # static model on a video: compare to every frame
            render.rgb = np.broadcast_to(render.rgb, gt.shape[:1] + render.rgb.shape[1:])
            render.depth = np.broadcast_to(render.depth, gt.shape[:1] + render.depth.shape[1:])
        metrics = evaluate_video(render.rgb, gt.astype(np.float32) / 255.0, device=device)
        metrics["dynamic_pixel_fraction"] = float(render.dynamic.mean())
        gt_depth = load_gt_depth(data.opts.datadir, cam, data.opts.frame_start, gt.shape[0], (data.h, data.w))
        if gt_depth is not None:
            metrics["depth"] = depth_metrics(render.depth, gt_depth)
        save_camera_pictures(out_dir, cam, render, gt, n_images)
        plot_per_frame(metrics["per_frame"]["psnr"], out_dir / f"{cam}_psnr_per_frame.png", "PSNR (dB)")
        write_per_frame_csv(out_dir / f"{cam}_per_frame.csv", metrics["per_frame"])
        results[cam] = json_safe(metrics)
        log.info("%s: PSNR %.2f dB, SSIM %.4f", cam, metrics["psnr"], metrics["ssim"])
    return results


def write_per_frame_csv(path: Path, per_frame: dict) -> None:
    ssim_at = dict(zip(per_frame["ssim_frames"].tolist(), per_frame["ssim"].tolist()))
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["frame", "psnr", "ssim"])
        for t, p in enumerate(per_frame["psnr"].tolist()):
            w.writerow([t, f"{p:.4f}", f"{ssim_at[t]:.5f}" if t in ssim_at else ""])


def write_metrics(path: Path, metrics: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(json_safe(metrics), indent=2))
    tmp.replace(path)

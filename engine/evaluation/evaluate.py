"""Evaluation shared by training and ``tools/evaluate.py`` (SPEC §7).

Metrics are computed in-process on raw float renders (never on mp4 decodes), frame chunk by frame
chunk so that no float video is held: PSNR of the whole test video and mean per-frame PSNR, SSIM
(data range 1.0) with DSSIM both ways, the optional LPIPS / FLIP / JOD on the 8-bit render
(``{"available": false, "reason": ...}`` when they cannot run, never 0) and,
when ``gt_depth/<cam>.npy`` exists, depth AbsRel / RMSE / delta<1.25 in world-unit camera z on the
test cameras and the training cameras.

Outputs in the run dir: ``metrics.json`` (merged with what training wrote), ``test/<cam>_per_frame.csv``,
pictures under ``test/`` and ``report.html`` (see :mod:`engine.evaluation.report`).
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path

import cv2
import numpy as np

from core.errors import UserError
from dataLoader.atomic_io import write_json, write_text
from dataLoader.scene_layout import SceneDir
from dataLoader.video_io import to_uint8
from engine.evaluation import metrics_mixvoxels as mixvoxels_ssim
from engine.evaluation.metrics import (
    depth_metrics_from_sums,
    depth_sums,
    frame_mse_ssim,
    optional_metrics,
    video_summary,
)
from engine.evaluation.report import CameraEvaluation, chosen_frames, save_camera_pictures, write_report
from engine.evaluation.visualize import plot_per_frame, plot_training_curves
from engine.render.frames import DEFAULT_BUFFER_BYTES, RenderSettings, iter_camera_frames

log = logging.getLogger(__name__)

VIDEO_FPS = 30.0  # frame rate assumed by JOD when the scene does not say


def load_gt_depth(datadir: Path, cam: str, frame_start: int, n_frames: int, hw) -> np.ndarray | None:
    """gt_depth/<cam>.npy [T_all, H0, W0] world-unit camera z -> [T, H, W] at hw (nearest), or None."""
    path = SceneDir(datadir).gt_depth(cam)
    if not path.is_file():
        return None
    try:
        depth = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable ground-truth depth ({exc})") from None
    if depth.ndim != 3 or depth.shape[0] < frame_start + n_frames:
        raise UserError(f"{path}: ground-truth depth of shape {list(depth.shape)} does not cover frames "
                        f"{frame_start}..{frame_start + n_frames - 1} (expected [T, H, W])")
    depth = depth[frame_start:frame_start + n_frames]
    if depth.shape[1:] != tuple(hw):
        depth = np.stack([cv2.resize(np.asarray(d), (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST)
                          for d in depth])
    return np.array(depth, dtype=np.float32)


def json_safe(obj):
    """Numpy arrays/scalars -> lists/floats; non-finite floats -> None."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return [json_safe(v) for v in obj.tolist()]
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_metrics(path: Path, metrics: dict) -> None:
    """Write metrics.json atomically (temp file + rename)."""
    write_json(path, json_safe(metrics), indent=2)


def read_metrics(path: Path) -> dict:
    """metrics.json as a dict ({} when absent or unreadable)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def write_per_frame_csv(path: Path, per_frame: dict) -> None:
    """CSV with columns frame, psnr, ssim (blank where not computed), depth_abs_rel (when present)."""
    ssim_at = dict(zip(np.asarray(per_frame["ssim_frames"]).tolist(), np.asarray(per_frame["ssim"]).tolist()))
    depth = per_frame.get("depth_abs_rel")
    fh = io.StringIO(newline="")
    w = csv.writer(fh)
    w.writerow(["frame", "psnr", "ssim"] + (["depth_abs_rel"] if depth is not None else []))
    for t, p in enumerate(np.asarray(per_frame["psnr"]).tolist()):
        row = [t, f"{p:.4f}", f"{ssim_at[t]:.5f}" if t in ssim_at else ""]
        if depth is not None:
            row.append("" if depth[t] is None else f"{depth[t]:.5f}")
        w.writerow(row)
    write_text(path, fh.getvalue())


def evaluate_camera(model, data, k: int, device, fps: float = VIDEO_FPS, picture_frames=(),
                    max_buffer_bytes: int = DEFAULT_BUFFER_BYTES, settings: RenderSettings | None = None
                    ) -> tuple[dict, CameraEvaluation]:
    """Render and score camera k of ``data`` -> (metrics, :class:`CameraEvaluation`).

    Every ray is rendered once for all frames (float frames beyond ``max_buffer_bytes`` wait in a temporary
    file, see :func:`engine.render.frames.iter_camera_frames`), then frames are scored one by one (PSNR, SSIM and
    depth on the float render); only the 8-bit render and the ``picture_frames`` stay in RAM, so memory is
    bounded at any video size. A static model (T = 1) is compared with every frame.
    The optional metrics (LPIPS, FLIP, JOD) see the 8-bit render."""
    cam = data.cam_names[k]
    gt = data.frames_of(k)
    n_t, h, w = gt.shape[:3]
    gt_depth = load_gt_depth(data.opts.datadir, cam, data.opts.frame_start, n_t, (h, w))
    rgb8 = np.empty_like(gt)
    mse, frame_ssim, sums = np.zeros(n_t), np.zeros(n_t), np.zeros((n_t, 4))
    pictures, statics, mv_ssim = {}, {}, []
    for t, rgb, depth in iter_camera_frames(model, data.c2w[k], h, w, data.focal, data.normalization, device,
                                            range(n_t), max_buffer_bytes, progress=False, statics=statics,
                                            settings=settings):
        mse[t], frame_ssim[t] = frame_mse_ssim(rgb, gt[t], device)
        if t % mixvoxels_ssim.EVERY == 0:
            mv_ssim.append(mixvoxels_ssim.ssim_mixvoxels(rgb, gt[t].astype(np.float64) / 255.0))
        rgb8[t] = to_uint8(rgb)
        if gt_depth is not None:
            sums[t] = depth_sums(depth, gt_depth[t])
        if t in picture_frames:
            pictures[t] = (rgb, depth)
    metrics = video_summary(mse, frame_ssim, np.arange(n_t))
    metrics.update(mixvoxels_ssim.summary(mv_ssim, list(range(0, n_t, mixvoxels_ssim.EVERY))))
    metrics["optional"] = optional_metrics(rgb8, gt, fps=fps, device=device)
    metrics["dynamic_pixel_fraction"] = float(statics["dynamic"].mean())
    if gt_depth is not None:
        metrics["depth"] = depth_metrics_from_sums(sums.sum(0))
        metrics["per_frame"]["depth_abs_rel"] = [depth_metrics_from_sums(s).get("abs_rel") for s in sums]
    else:
        metrics["depth"] = {"available": False, "reason": f"no gt_depth/{cam}.npy in the scene"}
    return metrics, CameraEvaluation(rgb8, gt, gt_depth, pictures, statics["static_rgb"])


def train_camera_depth(model, data, device, settings: RenderSettings | None = None) -> dict:
    """Depth metrics of every training camera that has ground truth -> {camera: metrics}."""
    out = {}
    for k in data.train_idx:
        cam = data.cam_names[k]
        gt = load_gt_depth(data.opts.datadir, cam, data.opts.frame_start, data.n_frames, (data.h, data.w))
        if gt is None:
            continue
        sums = np.zeros(4)
        for t, _, depth in iter_camera_frames(model, data.c2w[k], data.h, data.w, data.focal, data.normalization,
                                              device, range(data.n_frames), progress=False, settings=settings):
            sums += depth_sums(depth, gt[t])
        out[cam] = depth_metrics_from_sums(sums)
    return out


def evaluate_cameras(model, data, device, out_dir: Path, n_images: int = 3,
                     picture_frames: list[int] | None = None, settings: RenderSettings | None = None) -> dict:
    """Evaluate every test camera of ``data``: metrics, per-frame CSV and plot, pictures -> {camera: metrics}.

    File paths (relative to out_dir's parent, the run dir) are listed under each camera's ``files``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for k in data.test_idx:
        cam = data.cam_names[k]
        chosen = chosen_frames(data.n_frames, n_images, picture_frames)
        metrics, ev = evaluate_camera(model, data, k, device, picture_frames=chosen, settings=settings)
        files = save_camera_pictures(out_dir, cam, ev)
        plot_per_frame(metrics["per_frame"]["psnr"], out_dir / f"{cam}_psnr_per_frame.png", "PSNR (dB)",
                       title=f"{cam}: per-frame PSNR")
        write_per_frame_csv(out_dir / f"{cam}_per_frame.csv", metrics["per_frame"])
        files.update(psnr_plot=f"{cam}_psnr_per_frame.png", per_frame_csv=f"{cam}_per_frame.csv")
        metrics["files"] = {key: _rel(out_dir, v) for key, v in files.items()}
        results[cam] = json_safe(metrics)
        log.info("%s: PSNR %.2f dB, SSIM %.4f", cam, metrics["psnr"], metrics["ssim"])
    return results


def _rel(out_dir: Path, value):
    """File names inside out_dir -> paths relative to the run dir (out_dir's parent)."""
    if isinstance(value, list):
        return [_rel(out_dir, v) for v in value]
    return f"{out_dir.name}/{value}"


def evaluate_run(model, data, device, run_dir: Path, history: dict | None = None, n_images: int = 3,
                 picture_frames: list[int] | None = None, info: dict | None = None, merge: bool = True,
                 settings: RenderSettings | None = None) -> dict:
    """Evaluate test cameras (+ training-camera depth), write run_dir/metrics.json (updating the existing
    one when ``merge``), plot the training curves from ``history`` (when given) and write
    run_dir/report.html. Returns the full metrics dict."""
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir / "metrics.json") if merge else {}
    metrics.update(info or {})
    metrics["test"] = evaluate_cameras(model, data, device, run_dir / "test", n_images, picture_frames, settings)
    if history and history.get("iteration"):
        plot_training_curves(history, run_dir / "training_curves.png")
    metrics["train_depth"] = json_safe(train_camera_depth(model, data, device, settings))
    metrics["conventions"] = {
        "psnr": "whole-video PSNR from the MSE over all frames; psnr_per_frame_mean = mean of per-frame PSNRs",
        "ssim": "Gaussian SSIM (sigma 1.5) on float RGB in [0, 1], data range 1.0; dssim1 = 1 - SSIM, "
                "dssim2 = (1 - SSIM) / 2",
        "ssim_mixvoxels": "SSIM as MixVoxels' tables computed it (scikit-image's old defaults: 7x7 uniform "
                          "window, sample covariance, data range 2) on every 10th frame; "
                          "dssim_mixvoxels = (1 - SSIM) / 2",
        "depth": "world-unit camera z against gt_depth/; abs_rel, rmse (world units), delta_1_25",
    }
    write_metrics(run_dir / "metrics.json", metrics)
    write_report(run_dir, metrics)
    return metrics

"""Stage-level workflows built on the engine: after training, rendering videos, evaluating checkpoints.

Each returns the one-line summary its script prints. Bad input raises :class:`UserError`.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import UserError
from dataLoader.atomic_io import atomic_dir
from dataLoader.frame_cache import target_size
from engine.checkpoint import load_model
from engine.cli import refuse_existing
from engine.evaluation.evaluate import evaluate_run, write_metrics
from engine.evaluation.report import write_report
from engine.evaluation.visualize import plot_training_curves
from engine.precision import resolve_precision
from engine.render.camera_paths import PATHS, CameraPath, load_path_file, make_path
from engine.render.frames import (
    MODES,
    RenderSettings,
    iter_camera_frames,
    iter_path_frames,
    model_frames,
    write_render_video,
)
from engine.run_info import data_record, run_record
from engine.train.setup import environment, pick_device
from engine.train.signals import TrainingInterrupted

log = logging.getLogger(__name__)


def test_summary(test: dict) -> str:
    return "; ".join(f"{cam}: PSNR {m['psnr']:.2f} dB SSIM {m['ssim']:.4f}" for cam, m in test.items())


def finish_training(trainer, ckpt: Path) -> str:
    """Evaluate test cameras (if asked), write metrics.json, plots and report.html; return a summary line.

    Ctrl-C here stops with one line (the checkpoint is complete; tools/evaluate.py can finish the job).
    Unlocks the run dir at the end."""
    try:
        return _finish_training(trainer, ckpt)
    except KeyboardInterrupt:
        raise TrainingInterrupted(f"SIGINT during the end-of-run evaluation: {ckpt} is complete; evaluate it "
                                  f"with tools/evaluate.py --ckpt {ckpt}") from None
    finally:
        lock = getattr(trainer, "run_lock", None)
        if lock is not None:  # the run's outputs are written: the run dir is free again
            lock.release()


def _finish_training(trainer, ckpt: Path) -> str:
    run_dir, cfg = trainer.run_dir, trainer.cfg
    info = {"iterations": trainer.step, "train_time_s": trainer.elapsed, "environment": trainer.environment,
            "grid_resolution": trainer.model.resolution, "ckpt": str(ckpt), "test": {},
            "run": run_record(vars(cfg), str(trainer.device), trainer.environment), "data": data_record(trainer.data)}
    if cfg.render_test and trainer.data.test_idx:
        metrics = evaluate_run(trainer.model.eval(), trainer.data, trainer.device, run_dir, trainer.history,
                               cfg.n_test_images, info=info, merge=False,
                               settings=RenderSettings(trainer.precision, cfg.render_budget_mb))
    else:
        plot_training_curves(trainer.history, run_dir / "training_curves.png")
        metrics = info
        write_metrics(run_dir / "metrics.json", metrics)
        write_report(run_dir, metrics)
    parts = test_summary(metrics["test"])
    return f"trained {trainer.step} iterations in {trainer.elapsed:.0f} s -> {ckpt}" + (f"; {parts}" if parts else "")


# ------------------------------------------------------------------ shared checks
def ensure_writable_dir(path: Path) -> Path:
    """Create ``path`` if needed and prove a file can be written there; UserError otherwise."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"{path}: output directory cannot be written ({exc.strerror or exc})") from None
    return path


def parse_frame_range(spec: str, n_frames: int) -> tuple[int, int]:
    """"a:b" (b exclusive; either side may be empty), or "a" for one frame -> (start, stop) within [0, T)."""
    try:
        if not spec:
            start, stop = 0, n_frames
        elif ":" in spec:
            a, b = spec.split(":", 1)
            start, stop = int(a) if a else 0, int(b) if b else n_frames
        else:
            start = int(spec)
            stop = start + 1
    except ValueError:
        raise UserError(f"--frames {spec!r}: expected a:b with integers (b exclusive)") from None
    if not 0 <= start < stop <= n_frames:
        raise UserError(f"--frames {spec!r} is outside the model's {n_frames} frames (valid: 0:{n_frames})")
    return start, stop


def camera_table(state: dict, ckpt) -> dict:
    cams = state["extra"].get("cameras")
    if not cams:
        raise UserError(f"{ckpt}: checkpoint holds no camera table (written by an older train.py?)")
    return cams


# ------------------------------------------------------------------ render_one_video
@dataclass
class VideoRequest:
    """What ``render_one_video.py`` asks for (see its --help)."""

    ckpt: str
    cam_num: int = 0
    mode: str = "rgb"
    frames: str = ""
    fps: float = 30.0
    downsample: float = 0.0  # of the capture size, like every stage; 0: the size the model was trained at
    path: str = ""
    path_file: str = ""
    n_views: int = 120
    freeze_frame: int = 0
    png: int = 0
    out_dir: str = ""
    device: str = "auto"
    max_buffer_mb: int = 1024
    amp: int = -1
    render_budget_mb: float = -1
    overwrite: int = 0
    progress: bool = True


def _scaled(h: int, w: int, focal: float, downsample: float) -> tuple[int, int, float]:
    h2, w2 = target_size((h, w), downsample)
    return h2, w2, focal * w2 / w


def _frames_suffix(frames: tuple[int, int], n_t: int) -> str:
    """Output-name suffix of a frame range: empty for all n_t frames, else ``_fSSSS-EEEE`` (inclusive)."""
    return "" if frames == (0, n_t) else f"_f{frames[0]:04d}-{frames[1] - 1:04d}"


def _path_for(req: VideoRequest, cams: dict, norm, n_t: int, frames: tuple[int, int]) -> tuple[CameraPath, str]:
    if req.path_file:
        if req.frames:
            log.warning("--frames is ignored with --path_file (the file gives each pose's time)")
        return load_path_file(req.path_file, norm, n_t), f"path_{Path(req.path_file).stem}"
    if req.path not in PATHS:
        raise UserError(f"--path {req.path!r}: choose one of {', '.join(PATHS)}")
    if req.path == "bullet_time":
        if not 0 <= req.freeze_frame < n_t:
            raise UserError(f"--freeze_frame {req.freeze_frame} is outside the model's {n_t} frames")
        name = f"path_bullet_time_t{req.freeze_frame:04d}"
    else:
        name = f"path_{req.path}" + _frames_suffix(frames, n_t)
    try:
        return make_path(req.path, cams, req.n_views, frames, req.freeze_frame), name
    except UserError as exc:
        raise UserError(f"{req.ckpt}: {exc}") from None


def render_video(req: VideoRequest) -> str:
    """Render a training camera or a camera path of ``req.ckpt`` to an mp4 (+ PNGs); returns a summary."""
    if req.mode not in MODES:
        raise UserError(f"--mode {req.mode!r}: choose one of {', '.join(MODES)}")
    if req.downsample < 0:
        raise UserError(f"--downsample must be > 0 (or 0: as trained), got {req.downsample}")
    device = pick_device(req.device)
    settings = RenderSettings(resolve_precision(req.amp, device), req.render_budget_mb)
    model, norm, state = load_model(req.ckpt, device)
    cams = camera_table(state, req.ckpt)
    trained = float(state.get("config", {}).get("downsample_train") or 1.0)
    ds = req.downsample or trained  # of the capture size; the checkpoint's cameras are at capture / trained
    n_t = model_frames(model)
    frames = parse_frame_range(req.frames, n_t)
    h, w, focal = int(cams["hw"][0]), int(cams["hw"][1]), float(cams["focal"])
    if req.path or req.path_file:
        cam_path, name = _path_for(req, cams, norm, n_t, frames)
        if cam_path.hw is not None:
            focal, (h, w) = focal * cam_path.hw[1] / w, cam_path.hw
        focal = cam_path.focal if cam_path.focal is not None else focal
        h, w, focal = _scaled(h, w, focal, ds / trained)
        it = iter_path_frames(model, cam_path, h, w, focal, norm, device, progress=req.progress, settings=settings)
    else:
        if not 0 <= req.cam_num < len(cams["names"]):
            raise UserError(f"--cam_num {req.cam_num} out of range: the rig has {len(cams['names'])} cameras "
                            f"(0..{len(cams['names']) - 1})")
        name = cams["names"][req.cam_num] + _frames_suffix(frames, n_t)
        h, w, focal = _scaled(h, w, focal, ds / trained)
        it = iter_camera_frames(model, np.asarray(cams["c2w"][req.cam_num]), h, w, focal, norm, device,
                                list(range(*frames)), req.max_buffer_mb << 20, progress=req.progress,
                                settings=settings)
    name += f"_{req.mode}" + ("" if ds == trained else f"_ds{ds:g}")
    out_dir = ensure_writable_dir(Path(req.out_dir) if req.out_dir else Path(req.ckpt).parent / "videos")
    out = out_dir / f"{name}.mp4"
    png_dir = out_dir / name if req.png else None
    refuse_existing([out, png_dir], req.overwrite)
    with atomic_dir(png_dir, overwrite=True) if png_dir else contextlib.nullcontext() as png_tmp:
        n = write_render_video(it, out, req.mode, req.fps, png_tmp)
    width = 2 * w if req.mode == "rgbd" else w  # rgbd: colour and depth side by side
    return f"wrote {n} frames ({width}x{h}, {req.mode}) to {out}" + (f" and PNGs to {png_dir}/" if png_dir else "")


# ------------------------------------------------------------------ tools/evaluate.py
def evaluate_checkpoint(ckpt: str, device: str = "auto", datadir: str = "", n_images: int = 3,
                        picture_frames: list[int] | None = None, amp: int = -1, render_budget_mb: float = -1) -> str:
    """Evaluate a checkpoint's test cameras on its training data (``datadir`` overrides the stored path);
    updates RUN/metrics.json, the per-frame CSVs, pictures and RUN/report.html. Returns a summary."""
    from dataLoader.dataset import VideoDataset  # the dataset pulls in the frame cache; import lazily
    from engine.option_groups import data_options

    dev = pick_device(device)
    settings = RenderSettings(resolve_precision(amp, dev), render_budget_mb)
    model, norm, state = load_model(ckpt, dev)
    cfg = argparse.Namespace(**{**state["config"], **({"datadir": datadir} if datadir else {})})
    run_dir = ensure_writable_dir(Path(ckpt).parent)
    data = VideoDataset(data_options(cfg), normalization=norm)
    if not data.test_idx:
        raise UserError(f"{ckpt}: the run holds out no test camera (test_cams is empty)")
    info = {"ckpt": str(ckpt), "evaluated_iteration": int(state["step"]), "evaluation_environment": environment(),
            "run": run_record(state["config"], state["config"].get("device", "auto"),
                              state["extra"].get("environment", {})),
            "data": data_record(data)}  # the data these test metrics were computed on
    metrics = evaluate_run(model, data, dev, run_dir, state["extra"].get("history"), n_images, picture_frames,
                           info=info, settings=settings)
    return f"evaluated {test_summary(metrics['test'])} -> {run_dir / 'metrics.json'}, {run_dir / 'report.html'}"

"""Watching a training run: TensorBoard, periodic test renders, ``history.json`` kept current.

The trainer calls :meth:`Monitor.log_step` on logging steps only (every ``progress_refresh_rate``
iterations) and :meth:`Monitor.test_step` every ``vis_every`` iterations; nothing here touches a
device tensor on other steps, so monitoring adds no host synchronisation to ordinary iterations.

- TensorBoard (``--tensorboard 1``, needs the ``tensorboard`` package; ``tensorboard --logdir log``):
  scalars ``loss/total``, ``loss/<term>`` (every named loss term), ``train/psnr``, ``lr/<group>``,
  ``grid/voxels``, ``grid/samples_per_ray``, ``depth/supervised_fraction``, ``depth/weight``,
  ``speed/rays_per_s``, ``test/psnr`` and ``test/psnr_<cam>``; images ``test/<cam>_fNNNN/rgb_gt_error`` and
  ``test/<cam>_fNNNN/depth`` (labelled panels, see :mod:`engine.panels`).
- Periodic test (``vis_every`` > 0): ``n_vis`` evenly spaced frames of every test camera are rendered,
  their PSNR (pooled MSE) is appended to the history (``test_iteration``, ``test_time_s``,
  ``test_psnr``) and the labelled panels are written to ``RUN/vis/``.
- ``history.json`` is rewritten atomically at a log step when ``HISTORY_MIN_INTERVAL_S`` has passed
  since the last write, after every periodic test and at the end, so a crashed run keeps its curve.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from dataLoader.atomic_io import write_json
from engine.evaluation.evaluate import load_gt_depth
from engine.evaluation.metrics import psnr as mse_to_psnr
from engine.evaluation.report import ERROR_VMAX, chosen_frames
from engine.evaluation.visualize import save_png
from engine.panels import depth_panel, frame_panel
from engine.render.frames import RenderSettings, iter_camera_frames
from engine.train.schedule import depth_weight, lr_factor

log = logging.getLogger(__name__)

HISTORY_MIN_INTERVAL_S = 5.0  # bounds the cost of rewriting a long history at high iteration rates
FLUSH_SECS = 10  # TensorBoard event-file flush interval


def open_writer(log_dir: Path):
    """A TensorBoard SummaryWriter on log_dir, or None (with one warning) when tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard is not installed (pip install tensorboard): live logging is off; "
                    "pass --tensorboard 0 to silence this")
        return None
    return SummaryWriter(log_dir=str(log_dir), flush_secs=FLUSH_SECS)


def _host_values(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    """Named 0-d tensors -> floats with one device->host copy."""
    if not terms:
        return {}
    values = torch.stack([v.detach().float().reshape(()) for v in terms.values()]).tolist()
    return dict(zip(terms, values))


class Monitor:
    """Live view of one training run (see the module doc). ``history`` is the trainer's dict, updated in place."""

    def __init__(self, cfg, run_dir: Path, history: dict):
        self.cfg, self.run_dir, self.history = cfg, Path(run_dir), history
        for key in ("test_iteration", "test_time_s", "test_psnr", "lr", "rays_s"):
            history.setdefault(key, [])
        self.writer = None  # opened at the first log step (a Trainer that never trains writes no event file)
        self._want_writer = bool(cfg.tensorboard)
        self._written_at = -math.inf
        self._last = (None, None)  # (step, elapsed) of the previous log step, for the interval speed

    def _open(self) -> None:
        if self._want_writer:
            self.writer, self._want_writer = open_writer(self.run_dir / "tensorboard"), False

    # ------------------------------------------------------------------ log steps
    def log_step(self, trainer, loss, psnr, bar) -> None:
        """Append one history entry, write the scalars, update the bar; history.json when due."""
        step, elapsed, cfg = trainer.step, trainer.elapsed, self.cfg
        self._open()
        loss, psnr = float(loss), float(psnr)
        terms = _host_values(trainer.last_terms)
        # the learning rates of this iteration's update (a rebuild after it already holds the next ones)
        f = lr_factor(step - 1, cfg.n_iters, cfg.lr_decay, cfg.lr_decay_target_ratio)
        lrs = {g.get("name", str(i)): g["initial_lr"] * f for i, g in enumerate(trainer.optimizer.param_groups)}
        rays_s = self._rays_per_second(step, elapsed, cfg.batch_size)
        h = self.history
        for key, val in (("iteration", step), ("time_s", elapsed), ("loss", loss), ("psnr", psnr),
                         ("loss_terms", terms), ("lr", lrs), ("rays_s", rays_s)):
            h.setdefault(key, []).append(val)
        postfix = {"loss": f"{loss:.4f}", "psnr": f"{psnr:.2f}"}
        if "depth" in terms:
            postfix["depth"] = f"{terms['depth']:.2e}"
        postfix["rays_s"] = f"{rays_s:.0f}"
        bar.set_postfix(postfix)
        bar.update(step - bar.n)
        if self.writer is not None:
            self._scalars(trainer, loss, psnr, terms, lrs, rays_s)
        if time.monotonic() - self._written_at >= HISTORY_MIN_INTERVAL_S:
            self.flush()

    def _rays_per_second(self, step: int, elapsed: float, batch: int) -> float:
        prev_step, prev_t = self._last
        self._last = (step, elapsed)
        if prev_step is None or elapsed <= prev_t:
            return step * batch / max(elapsed, 1e-9)
        return (step - prev_step) * batch / (elapsed - prev_t)

    def _scalars(self, trainer, loss, psnr, terms, lrs, rays_s) -> None:
        w, step = self.writer, trainer.step
        w.add_scalar("loss/total", loss, step)
        for name, val in terms.items():
            w.add_scalar(f"loss/{name}", val, step)
        w.add_scalar("train/psnr", psnr, step)
        for name, lr in lrs.items():
            w.add_scalar(f"lr/{name}", lr, step)
        w.add_scalar("grid/voxels", float(np.prod(trainer.model.resolution)), step)
        w.add_scalar("grid/samples_per_ray", trainer.model.n_samples, step)
        w.add_scalar("speed/rays_per_s", rays_s, step)
        fraction = trainer.depth_fraction
        if fraction is not None:
            w.add_scalar("depth/supervised_fraction", float(fraction), step)
            w.add_scalar("depth/weight", depth_weight(step, self.cfg.n_iters, self.cfg.depth_lambda,
                                                      self.cfg.depth_lambda_decay), step)

    # ------------------------------------------------------------------ periodic test
    def test_due(self, step: int) -> bool:
        return self.cfg.vis_every > 0 and step % self.cfg.vis_every == 0

    def test_step(self, trainer) -> float:
        """Render ``n_vis`` frames of every test camera; log their PSNR (pooled MSE) and panels.
        Returns the seconds it took (the trainer keeps them out of the training time)."""
        start = time.perf_counter()
        self._open()
        data, step = trainer.data, trainer.step
        if not data.test_idx:
            return 0.0
        frames = chosen_frames(data.n_frames, self.cfg.n_vis, None)
        sq_err, per_cam = [], {}
        for k in data.test_idx:
            cam = data.cam_names[k]
            gt_depth = load_gt_depth(data.opts.datadir, cam, data.opts.frame_start, data.n_frames, (data.h, data.w))
            cam_err = []
            for t, rgb, depth in iter_camera_frames(trainer.model, data.c2w[k], data.h, data.w, data.focal,
                                                    data.normalization, trainer.device, frames, progress=False,
                                                    settings=RenderSettings(trainer.precision,
                                                                            trainer.cfg.render_budget_mb)):
                gt = np.asarray(data.cache.frames[k][:, :, t], np.float32) / 255.0  # cache: [H, W, T, 3]
                cam_err.append(float(np.mean((rgb - gt) ** 2)))
                self._pictures(cam, t, step, rgb, gt, depth, None if gt_depth is None else gt_depth[t])
            per_cam[cam] = mse_to_psnr(np.mean(cam_err))
            sq_err += cam_err
        value = mse_to_psnr(np.mean(sq_err))
        h = self.history
        for key, val in (("test_iteration", step), ("test_time_s", trainer.elapsed), ("test_psnr", value)):
            h[key].append(val)
        if self.writer is not None:
            self.writer.add_scalar("test/psnr", value, step)
            for cam, val in per_cam.items():
                self.writer.add_scalar(f"test/psnr_{cam}", val, step)
        log.info("iteration %d: test PSNR %.2f dB (%d frames x %d cameras)", step, value, len(frames),
                 len(data.test_idx))
        self.flush()
        return time.perf_counter() - start

    def _pictures(self, cam: str, t: int, step: int, rgb, gt, depth, gt_depth) -> None:
        """rgb, gt [H, W, 3] float, depth (, gt_depth) [H, W] world units -> RUN/vis/ PNGs and TensorBoard."""
        panels = {"rgb_gt_error": frame_panel(rgb, gt, ERROR_VMAX), "depth": depth_panel(depth, gt_depth)}
        for name, img in panels.items():
            save_png(self.run_dir / "vis" / f"{cam}_f{t:04d}_it{step:06d}_{name}.png", img)
            if self.writer is not None:
                self.writer.add_image(f"test/{cam}_f{t:04d}/{name}", img, step, dataformats="HWC")

    # ------------------------------------------------------------------ end
    def flush(self) -> None:
        write_json(self.run_dir / "history.json", self.history, indent=None)  # atomic: temp + fsync + rename
        self._written_at = time.monotonic()
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        self.flush()
        if self.writer is not None:
            self.writer.close()
            self.writer = None

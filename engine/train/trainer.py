"""Trainer: the MixVoxels training loop (static + dynamic branches, variation field, schedules).

One Adam holds named parameter groups; it is rebuilt in exactly one place
(:meth:`Trainer.rebuild_optimizer`) whenever the model replaces parameters (upsample,
shrink). Learning rates are recomputed from the iteration every step, so a rebuild keeps
the schedule position.

Resume is exact: a checkpoint holds everything the next iteration depends on (model incl.
alpha mask and grid size, optimizer, AMP scaler, ray-sampler and depth-sampler positions,
whether the variation warm-up ran, history, RNG states), so ``--resume 1`` continues the same
sequence of iterations as an uninterrupted run with the same config (bit-identical on CPU).
Checkpoints are written every ``save_every`` iterations and on SIGINT/SIGTERM (then the run
exits with one line, see :mod:`engine.train.signals`).
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core.errors import UserError
from dataLoader.dataset import VideoDataset
from dataLoader.poses import SceneNormalization
from dataLoader.samplers import EpochSampler, KeypointSampler
from engine import option_groups, options
from engine.checkpoint import load_checkpoint, model_from_state, save_checkpoint
from engine.monitor import Monitor
from engine.precision import device_name, resolve_precision
from engine.run_dir import lock_run_dir, run_dir_for
from engine.startup import startup_line
from engine.train import setup
from engine.train.schedule import (
    blur_sigma,
    depth_weight,
    lr_factor,
    n_to_reso,
    tv_scale,
    upsample_reset_factor,
)
from engine.train.signals import StopRequest, TrainingInterrupted, check_finite_loss
from models import losses
from models.dead_frames import dead_frames, probe_points, revive
from models.objective import StepScales
from models.regularizers import background_step
from models.visibility import seen_grid

log = logging.getLogger(__name__)


class Trainer:
    def __init__(self, cfg: argparse.Namespace):
        """cfg: a resolved config (:func:`engine.options.resolve`); its typed groups are built once here."""
        self.cfg = cfg  # the flat config: what config.txt and checkpoints store
        self.opts = option_groups.groups(cfg)
        run, train = self.opts.run, self.opts.train
        self.run, self.train = run, train
        self.device = setup.pick_device(run.device)
        setup.seed_everything(run.seed)
        self.run_dir = run_dir_for(cfg)
        self.run_lock = None
        state = self._load_resume_state() if run.resume else None
        norm = SceneNormalization.from_dict(state["normalization"]) if state else None
        self.data = VideoDataset(self.opts.data, normalization=norm)
        self.norm = self.data.normalization
        if state:
            self.model = model_from_state(state, self.device)
        else:
            self.model = setup.new_model(self.opts.model, self.data, train.grid.n_voxel_init, self.device)
        self.schedule = train.grid
        self.sampler = EpochSampler(self.data.n_train_rays, train.batch_size, run.seed)
        self.keypoints = None if self.data.keypoints is None else KeypointSampler(
            self.data.keypoints, train.keypoint_batch, run.seed + 2, self.device)
        self.weights = self.opts.objective.for_scene(self.norm.ndc)
        if self.opts.objective.opacity < 0:
            log.info("opacity prior (automatic): %g on this %s scene", self.weights.opacity,
                     "forward-facing" if self.norm.ndc else "bounded")
        self.variation_ready = bool(self.model.cfg.static_only) or train.n_variation_iters <= 0
        self.environment = setup.environment()
        self.precision = resolve_precision(train.amp, self.device)
        log.info("device %s, mixed precision %s", device_name(self.device), self.precision.describe())
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.needs_scaler)
        self.step = 0
        self.history: dict[str, list] = {"iteration": [], "time_s": [], "loss": [], "psnr": [], "loss_terms": []}
        self.last_terms: dict[str, torch.Tensor] = {}
        self.depth_fraction: torch.Tensor | None = None  # supervised share of the last batch (monitoring)
        self.elapsed = 0.0
        self.rebuild_optimizer()
        if state:
            self._restore(state)
        self.monitor = Monitor(cfg, self.run_dir, self.history)  # TensorBoard, periodic tests, history.json
        log.info(startup_line(cfg, self.device, self.data, self.model))

    # ------------------------------------------------------------------ state
    def _load_resume_state(self) -> dict:
        if not self.run.ckpt:
            raise UserError("config: --resume 1 needs --ckpt RUN/ckpt.pt")
        state = load_checkpoint(self.run.ckpt)
        diff = setup.config_differences(state["config"], vars(self.cfg))
        if diff:
            raise UserError(f"{self.run.ckpt}: checkpoint was trained with a different config; differing keys: "
                            f"{setup.describe_differences(state['config'], vars(self.cfg), diff)}")
        return state

    def _restore(self, state: dict) -> None:
        self.step = state["step"]
        extra = state["extra"]
        if extra["sampler"]["n"] != self.sampler.n:
            raise UserError(f"{self.run.ckpt}: checkpoint was trained on {extra['sampler']['n']} rays but the "
                            f"dataset now has {self.sampler.n} (different frames, cameras or size)")
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(extra["sampler"])
        if extra.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(extra["scaler"])
        if self.keypoints is not None and extra.get("depth"):
            self.keypoints.load_state_dict(extra["depth"])
        self.variation_ready = extra.get("variation_ready", True)
        self.history = extra["history"]
        self.elapsed = extra["elapsed"]
        setup.set_rng_state(extra["rng"])
        log.info("resumed from %s at iteration %d", self.run.ckpt, self.step)

    def rebuild_optimizer(self) -> None:
        """The one place an optimizer is (re)built: it holds exactly the model's live parameters."""
        t = self.train
        groups = self.model.param_groups(t.lr_init, t.lr_basis, t.lr_dynamic_init, t.lr_dynamic_basis)
        for g in groups:
            g["initial_lr"] = g["lr"]
        # fused (CUDA): one kernel per step, and with a GradScaler no host sync for the inf check
        self.optimizer = torch.optim.Adam(groups, betas=(0.9, 0.99), fused=self.device.type == "cuda")
        self._set_lr()

    def _set_lr(self) -> None:
        t = self.train
        f = lr_factor(self.step, t.n_iters, t.lr_decay, t.lr_decay_target_ratio)
        if t.lr_upsample_reset:
            f = upsample_reset_factor(self.step, t.n_iters, t.lr_decay, t.lr_decay_target_ratio, t.grid.upsample_at)
        for g in self.optimizer.param_groups:
            g["lr"] = g["initial_lr"] * f

    def save(self) -> Path:
        path = self.run_dir / "ckpt.pt"
        extra = {"sampler": self.sampler.state_dict(), "history": self.history, "elapsed": self.elapsed,
                 "rng": setup.rng_state(), "cameras": self.data.camera_table(),
                 "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                 "depth": self.keypoints.state_dict() if self.keypoints is not None else None,
                 "variation_ready": self.variation_ready, "environment": self.environment}
        save_checkpoint(path, self.model, self.norm, vars(self.cfg), self.step, self.optimizer, extra)
        return path

    def _write_history(self) -> None:
        self.monitor.flush()

    # ------------------------------------------------------------------ training
    def fit(self) -> Path:
        """Train to ``n_iters``; returns the final checkpoint. SIGINT/SIGTERM: save, then TrainingInterrupted.

        The run dir stays locked by this trainer after a normal end (its outputs follow); any error unlocks it."""
        if self.run_lock is None:
            self.run_lock = lock_run_dir(self.run_dir, self.cfg)
        try:
            return self._fit()
        except BaseException:
            self.run_lock.release()
            self.run_lock = None
            raise

    def _fit(self) -> Path:
        options.save_config(self.cfg, self.run_dir / "config.txt")
        with StopRequest() as stop:
            if not self.variation_ready:
                self.warmup_variation(stop=stop)
                self.variation_ready = True
            bar = tqdm(total=self.train.n_iters, initial=self.step, desc="train", unit="it", dynamic_ncols=True)
            try:
                self._loop(stop, bar)
            finally:
                bar.close()
            ckpt = self.save()
            self.monitor.close()
            if stop.signal is not None:
                self._stop(stop, ckpt)
        return ckpt

    def _loop(self, stop: StopRequest, bar) -> None:
        t0 = time.perf_counter() - self.elapsed
        while self.step < self.train.n_iters:
            if stop.signal is not None:
                self._stop(stop, self.save())
            loss, psnr = self.train_step()
            self.step += 1
            self.after_step()
            logging_step = self.step % self.run.progress_refresh_rate == 0 or self.step == self.train.n_iters
            if logging_step:  # the loop's only host synchronisation (values leave the device)
                loss, psnr = float(loss), float(psnr)
            self.elapsed = time.perf_counter() - t0
            if logging_step:
                self._log(loss, psnr, bar)
            if self.monitor.test_due(self.step):
                t0 += self.monitor.test_step(self)  # test time is not training time
            if self.step % self.run.save_every == 0:
                self.save()

    def _stop(self, stop: StopRequest, ckpt: Path) -> None:
        self._write_history()
        raise TrainingInterrupted(f"{stop.name} at iteration {self.step}/{self.train.n_iters}: checkpoint saved to "
                                  f"{ckpt}; continue with --resume 1 --ckpt {ckpt}")

    def _log(self, loss: float, psnr: float, bar) -> None:
        # history entry (loss_terms: one {term name: value} per log step), TensorBoard, bar, history.json
        self.monitor.log_step(self, loss, psnr, bar)

    def step_scales(self) -> StepScales:
        t = self.train
        return StepScales(tv_scale(self.step, t.n_iters, t.lr_decay, t.lr_decay_target_ratio, t.tv_scale),
                          depth_weight(self.step, t.n_iters, t.depth_lambda, t.depth_lambda_decay),
                          lr_factor(self.step, t.n_iters, t.lr_decay, t.lr_decay_target_ratio),
                          background_step(self.step, self.weights.white_bg_fraction),
                          self.step >= self.weights.opacity_start * t.n_iters)

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One iteration -> (loss, batch PSNR) as 0-d device tensors; nothing here waits for the device."""
        self._set_lr()
        t = self.train
        blur = blur_sigma(self.step, t.n_iters, t.target_blur, t.target_blur_until)
        rng = np.random.default_rng([self.run.seed, self.step])  # a function of the step: resumes repeat it
        batch = self.data.gather(self.sampler.next(), rng, blur, t.pixel_jitter, t.static_target)  # (+ dense depth)
        if self.device.type == "cuda":  # pinned host memory: the copy below runs asynchronously
            batch = batch.pin_memory()
        batch = batch.to(self.device)
        keypoints = self.keypoints.next() if self.keypoints is not None else None  # sparse depth rays
        label = batch.std > t.temporal_variance_threshold
        scales = self.step_scales()
        with self.precision.autocast():
            out = self.model(batch, jitter=True, **self.dynamic_rays(label))
            terms = self.model.loss_terms(batch, out, label, self.weights, scales)
            if keypoints is not None:  # static rays: the dynamic branch stays off
                kp_out = self.model(keypoints, jitter=True, ray_dynamic=torch.zeros(
                    len(keypoints), dtype=torch.bool, device=self.device))
                terms.update(self.model.keypoint_terms(keypoints, kp_out, self.weights, scales))
        loss = sum(terms.values())
        check_finite_loss(loss, terms, self.step + 1, self.run_dir / "ckpt.pt")
        self.last_terms = {k: v.detach() for k, v in terms.items()}
        self.depth_fraction = depth_fraction(batch, label, keypoints)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        with torch.no_grad():
            mse = losses.mse(out.rgb.float().expand_as(batch.rgb), batch.rgb) if self.model.cfg.static_only \
                else losses.mse(out.rgb.float(), batch.rgb)
        return loss.detach(), -10 * torch.log10(mse)

    def dynamic_rays(self, label: torch.Tensor) -> dict:
        """Keyword arguments of the training forward that choose which rays the dynamic branch renders.

        ``train_dynamic_rays``: ``label`` -- the std label [N] (test time uses the variation field, so
        rays the field calls dynamic but the label does not are never trained dynamically); ``field`` --
        the variation field's prediction, as at test time (MixVoxels' point_wise training); ``union`` --
        label OR field.
        """
        if self.model.cfg.static_only or self.train.train_dynamic_rays == "field":
            return {"ray_dynamic": None}
        return {"ray_dynamic": label, "dynamic_union": self.train.train_dynamic_rays == "union"}

    def after_step(self) -> None:
        """Grid schedule hooks: alpha mask / shrink and upsampling, then optimizer rebuild."""
        update, shrink = self.schedule.alpha_mask_update(self.step)
        changed = False
        if update:
            seen = None if self.model.cfg.ndc else seen_grid(  # bounded: drop space no training ray sees
                self.model, self.data.train_origins, self.data.train_dirs, self.model.resolution, seed=self.run.seed)
            box = self.model.update_alpha_mask(self.model.resolution, seen)
            if shrink and box is not None:
                self.model.shrink(box)
                changed = True
        count = self.schedule.upsample_count(self.step)
        if count is not None:
            self.model.upsample(n_to_reso(count, self.model.aabb))
            changed = True
        if count is not None and self.train.variation_refit_iters > 0 and not self.model.cfg.static_only:
            self.warmup_variation(n_iters=self.train.variation_refit_iters)
        if changed:
            self.rebuild_optimizer()
            log.debug("grid %s, %d samples/ray", self.model.resolution, self.model.n_samples)
        check = self.train.dead_frame_check
        if check > 0 and self.step % check == 0 and not self.model.cfg.static_only:
            self.revive_dead_frames()

    def revive_dead_frames(self) -> list[tuple[int, int]]:
        """Restart frames whose dynamic density is dead (:mod:`models.dead_frames`) -> [(frame, source)]."""
        pairs = revive(self.model, self.optimizer, dead_frames(self.model, probe_points(self.model.aabb)))
        if pairs:
            log.warning("iteration %d: dynamic density of frame(s) %s was <= 0 everywhere; restarted from "
                        "frame(s) %s", self.step, [t for t, _ in pairs], [s for _, s in pairs])
        return pairs

    def warmup_variation(self, n_iters: int | None = None, stop: StopRequest | None = None) -> None:
        """(Re)fit the variation field against the std label (cheap: no colour heads); n_iters defaults
        to ``n_variation_iters`` (the warm-up before the main loop). A signal stops it at once (no
        checkpoint: the warm-up restarts with the next run)."""
        n = self.train.n_variation_iters if n_iters is None else n_iters
        if n <= 0:
            return
        params = self.model.variation.grid_parameters()
        opt = torch.optim.Adam(params, lr=self.train.lr_init, betas=(0.9, 0.99))
        sampler = EpochSampler(self.data.n_train_rays, self.train.batch_size, self.run.seed + 1)
        for _ in tqdm(range(n), desc="variation warm-up", unit="it", leave=False):
            if stop is not None and stop.signal is not None:
                raise TrainingInterrupted(f"{stop.name} during the variation warm-up of {self.run_dir}: "
                                          f"no checkpoint written; rerun to start again")
            batch = self.data.gather(sampler.next()).to(self.device)
            logit = self.model.ray_variation_logit(batch, jitter=True)
            loss = losses.variation_bce(logit, batch.std > self.train.temporal_variance_threshold)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def depth_fraction(batch, label: torch.Tensor, keypoints) -> torch.Tensor | None:
    """Share of the colour batch's rays with a depth target: dense targets on static rays, or keypoint
    rays per colour-batch ray; None without depth (a device tensor: no sync)."""
    if keypoints is not None:
        return (keypoints.depth_weight > 0).float().sum() / len(batch)
    if batch.depth is None:
        return None
    return ((batch.depth_weight * (~label).float()) > 0).float().mean()

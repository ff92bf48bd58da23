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
exits with one line, see :mod:`engine.signals`).
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch
from tqdm import tqdm

from dataLoader.dataset import VideoDataset
from dataLoader.errors import UserError
from dataLoader.poses import SceneNormalization
from dataLoader.samplers import EpochSampler
from engine import setup
from engine.checkpoint import load_checkpoint, model_from_state, save_checkpoint
from engine.monitor import Monitor
from engine.precision import device_name, resolve_precision
from engine.regularize import regularizer_terms, static_rgb_for_loss, train_dynamic_rays
from engine.run_dir import lock_run_dir, run_dir_for
from engine.schedule import GridSchedule, lr_factor, n_to_reso, upsample_reset_factor
from engine.signals import StopRequest, TrainingInterrupted, check_finite_loss
from engine.startup import startup_line
from engine.supervision import build_depth_supervision
from models import losses
from models.types import RayBatch
from models.visibility import seen_grid
from opt import save_config

log = logging.getLogger(__name__)


class Trainer:
    def __init__(self, cfg: argparse.Namespace):
        self.cfg = cfg
        self.device = setup.pick_device(cfg.device)
        setup.seed_everything(cfg.seed)
        self.run_dir = run_dir_for(cfg)
        self.run_lock = None
        state = self._load_resume_state() if cfg.resume else None
        norm = SceneNormalization.from_dict(state["normalization"]) if state else None
        self.data = VideoDataset(setup.data_options(cfg), normalization=norm)
        self.norm = self.data.normalization
        if state:
            self.model = model_from_state(state, self.device)
        else:
            self.model = setup.new_model(cfg, self.data, self.device)
        self.schedule = GridSchedule(cfg.N_voxel_init, cfg.N_voxel_final, tuple(cfg.upsamp_list),
                                     tuple(cfg.update_AlphaMask_list))
        self.sampler = EpochSampler(self.data.n_train_rays, cfg.batch_size, cfg.seed)
        self.depth = build_depth_supervision(cfg, self.data, self.device)
        self.variation_ready = bool(self.model.cfg.static_only) or cfg.n_variation_iters <= 0
        self.environment = setup.environment()
        self.precision = resolve_precision(cfg.amp, self.device)
        log.info("device %s, mixed precision %s", device_name(self.device), self.precision.describe())
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.needs_scaler)
        self.step = 0
        self.history: dict[str, list] = {"iteration": [], "time_s": [], "loss": [], "psnr": [], "loss_terms": []}
        self.last_terms: dict[str, torch.Tensor] = {}
        self.elapsed = 0.0
        self.rebuild_optimizer()
        if state:
            self._restore(state)
        self.monitor = Monitor(cfg, self.run_dir, self.history)  # TensorBoard, periodic tests, history.json
        log.info(startup_line(cfg, self.device, self.data, self.model))

    # ------------------------------------------------------------------ state
    def _load_resume_state(self) -> dict:
        if not self.cfg.ckpt:
            raise UserError("config: --resume 1 needs --ckpt RUN/ckpt.pt")
        state = load_checkpoint(self.cfg.ckpt)
        diff = setup.config_differences(state["config"], vars(self.cfg))
        if diff:
            raise UserError(f"{self.cfg.ckpt}: checkpoint was trained with a different config; differing keys: "
                            f"{setup.describe_differences(state['config'], vars(self.cfg), diff)}")
        return state

    def _restore(self, state: dict) -> None:
        self.step = state["step"]
        extra = state["extra"]
        if extra["sampler"]["n"] != self.sampler.n:
            raise UserError(f"{self.cfg.ckpt}: checkpoint was trained on {extra['sampler']['n']} rays but the "
                            f"dataset now has {self.sampler.n} (different frames, cameras or size)")
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(extra["sampler"])
        if extra.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(extra["scaler"])
        if self.depth is not None and extra.get("depth"):
            self.depth.load_state_dict(extra["depth"])
        self.variation_ready = extra.get("variation_ready", True)
        self.history = extra["history"]
        self.elapsed = extra["elapsed"]
        setup.set_rng_state(extra["rng"])
        log.info("resumed from %s at iteration %d", self.cfg.ckpt, self.step)

    def rebuild_optimizer(self) -> None:
        """The one place an optimizer is (re)built: it holds exactly the model's live parameters."""
        c = self.cfg
        groups = self.model.param_groups(c.lr_init, c.lr_basis, c.lr_dynamic_init, c.lr_dynamic_basis)
        for g in groups:
            g["initial_lr"] = g["lr"]
        # fused (CUDA): one kernel per step, and with a GradScaler no host sync for the inf check
        self.optimizer = torch.optim.Adam(groups, betas=(0.9, 0.99), fused=self.device.type == "cuda")
        self._set_lr()

    def _set_lr(self) -> None:
        f = lr_factor(self.step, self.cfg.n_iters, self.cfg.lr_decay, self.cfg.lr_decay_target_ratio)
        if self.cfg.lr_upsample_reset:
            f = upsample_reset_factor(self.step, self.cfg.n_iters, self.cfg.lr_decay, self.cfg.lr_decay_target_ratio,
                                      self.schedule.upsample_at)
        for g in self.optimizer.param_groups:
            g["lr"] = g["initial_lr"] * f

    def save(self) -> Path:
        path = self.run_dir / "ckpt.pt"
        extra = {"sampler": self.sampler.state_dict(), "history": self.history, "elapsed": self.elapsed,
                 "rng": setup.rng_state(), "cameras": self.data.camera_table(),
                 "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                 "depth": self.depth.state_dict() if self.depth is not None else None,
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
        save_config(self.cfg, self.run_dir / "config.txt")
        with StopRequest() as stop:
            if not self.variation_ready:
                self.warmup_variation(stop=stop)
                self.variation_ready = True
            bar = tqdm(total=self.cfg.n_iters, initial=self.step, desc="train", unit="it", dynamic_ncols=True)
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
        while self.step < self.cfg.n_iters:
            if stop.signal is not None:
                self._stop(stop, self.save())
            loss, psnr = self.train_step()
            self.step += 1
            self.after_step()
            logging_step = self.step % self.cfg.progress_refresh_rate == 0 or self.step == self.cfg.n_iters
            if logging_step:  # the loop's only host synchronisation (values leave the device)
                loss, psnr = float(loss), float(psnr)
            self.elapsed = time.perf_counter() - t0
            if logging_step:
                self._log(loss, psnr, bar)
            if self.monitor.test_due(self.step):
                t0 += self.monitor.test_step(self)  # test time is not training time
            if self.step % self.cfg.save_every == 0:
                self.save()

    def _stop(self, stop: StopRequest, ckpt: Path) -> None:
        self._write_history()
        raise TrainingInterrupted(f"{stop.name} at iteration {self.step}/{self.cfg.n_iters}: checkpoint saved to "
                                  f"{ckpt}; continue with --resume 1 --ckpt {ckpt}")

    def _log(self, loss: float, psnr: float, bar) -> None:
        # history entry (loss_terms: one {term name: value} per log step), TensorBoard, bar, history.json
        self.monitor.log_step(self, loss, psnr, bar)

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One iteration -> (loss, batch PSNR) as 0-d device tensors; nothing here waits for the device."""
        self._set_lr()
        idx = self.sampler.next()
        batch = self.data.gather(idx)
        if self.depth is not None:
            batch = self.depth.annotate(batch, idx)
        if self.device.type == "cuda":  # pinned host memory: the copy below runs asynchronously
            batch = batch.pin_memory()
        batch = batch.to(self.device)
        label = batch.std > self.cfg.temporal_variance_threshold
        with self.precision.autocast():
            out = self.model(batch, jitter=True, **train_dynamic_rays(self.cfg, self.model, label))
        terms = self.loss_terms(batch, out, label)
        if self.depth is not None:
            terms.update(self.depth.loss_terms(self.model, batch, out, label, self.step))
        loss = sum(terms.values())
        check_finite_loss(loss, terms, self.step + 1, self.run_dir / "ckpt.pt")
        self.last_terms = {k: v.detach() for k, v in terms.items()}
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        with torch.no_grad():
            mse = losses.mse(out.rgb.float().expand_as(batch.rgb), batch.rgb) if self.model.cfg.static_only \
                else losses.mse(out.rgb.float(), batch.rgb)
        return loss.detach(), -10 * torch.log10(mse)

    def loss_terms(self, batch: RayBatch, out, label: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named loss terms of one batch (colour, TV, variation field)."""
        c, m = self.cfg, self.model
        lr_f = lr_factor(self.step, c.n_iters, c.lr_decay, c.lr_decay_target_ratio)
        tv_scale = c.tv_scale * lr_f
        terms = {
            "static_rgb": losses.mse(static_rgb_for_loss(c, out, self.step).float(), batch.rgb.mean(1)),
            "tv_static": tv_scale * (c.TV_weight_density * m.density.tv_loss()
                                     + c.TV_weight_app * m.appearance.tv_loss()),
        }
        if not m.cfg.static_only:
            terms["dynamic_rgb"] = losses.masked_mse(out.rgb.float(), batch.rgb, out.dynamic_mask)
            terms["tv_dynamic"] = tv_scale * c.TV_dynamic_factor * (
                c.TV_weight_density * m.dyn_density.tv_loss() + c.TV_weight_app * m.dyn_appearance.tv_loss())
            terms["variation_bce"] = c.variation_weight * losses.variation_bce(out.ray_logit.float(), label)
        terms.update(regularizer_terms(c, out, lr_f))
        return terms

    def after_step(self) -> None:
        """Grid schedule hooks: alpha mask / shrink and upsampling, then optimizer rebuild."""
        update, shrink = self.schedule.alpha_mask_update(self.step)
        changed = False
        if update:
            seen = None if self.model.cfg.ndc else seen_grid(  # bounded: drop space no training ray sees
                self.model, self.data.train_origins, self.data.train_dirs, self.model.resolution, seed=self.cfg.seed)
            box = self.model.update_alpha_mask(self.model.resolution, seen)
            if shrink and box is not None:
                self.model.shrink(box)
                changed = True
        count = self.schedule.upsample_count(self.step)
        if count is not None:
            self.model.upsample(n_to_reso(count, self.model.aabb))
            changed = True
        if count is not None and self.cfg.variation_refit_iters > 0 and not self.model.cfg.static_only:
            self.warmup_variation(self.cfg.variation_refit_iters)
        if changed:
            self.rebuild_optimizer()
            log.debug("grid %s, %d samples/ray", self.model.resolution, self.model.n_samples)

    def warmup_variation(self, n_iters: int | None = None, stop: StopRequest | None = None) -> None:
        """(Re)fit the variation field against the std label (cheap: no colour heads); n_iters defaults
        to ``n_variation_iters`` (the warm-up before the main loop). A signal stops it at once (no
        checkpoint: the warm-up restarts with the next run)."""
        n = self.cfg.n_variation_iters if n_iters is None else n_iters
        if n <= 0:
            return
        params = self.model.variation.grid_parameters()
        opt = torch.optim.Adam(params, lr=self.cfg.lr_init, betas=(0.9, 0.99))
        sampler = EpochSampler(self.data.n_train_rays, self.cfg.batch_size, self.cfg.seed + 1)
        for _ in tqdm(range(n), desc="variation warm-up", unit="it", leave=False):
            if stop is not None and stop.signal is not None:
                raise TrainingInterrupted(f"{stop.name} during the variation warm-up of {self.run_dir}: "
                                          f"no checkpoint written; rerun to start again")
            batch = self.data.gather(sampler.next()).to(self.device)
            _, _, xyz, valid = self.model.sample_points(batch, jitter=True)
            logits = xyz.new_full(valid.shape, -30.0)
            if valid.any():
                logits[valid] = self.model.variation(self.model.normalize_coords(xyz[valid]))
            loss = losses.variation_bce(logits.max(-1).values, batch.std > self.cfg.temporal_variance_threshold)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

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
import contextlib
import json
import logging
import time
from pathlib import Path

import torch
from tqdm import tqdm

from dataLoader.dataset import VideoDataset
from dataLoader.errors import UserError
from dataLoader.poses import SceneNormalization
from dataLoader.samplers import EpochSampler, KeypointSampler
from engine import setup
from engine.checkpoint import load_checkpoint, model_from_state, save_checkpoint
from engine.schedule import GridSchedule, depth_weight, lr_factor, n_to_reso, tv_scale
from engine.signals import StopRequest, TrainingInterrupted
from models import losses
from models.objective import ObjectiveWeights, StepScales
from models.visibility import seen_grid
from opt import save_config

log = logging.getLogger(__name__)


class Trainer:
    def __init__(self, cfg: argparse.Namespace):
        self.cfg = cfg
        self.device = setup.pick_device(cfg.device)
        setup.seed_everything(cfg.seed)
        self.run_dir = setup.prepare_run_dir(cfg)
        state = self._load_resume_state() if cfg.resume else None
        norm = SceneNormalization.from_dict(state["normalization"]) if state else None
        self.data = VideoDataset(setup.data_options(cfg, with_depth=True), normalization=norm)
        self.norm = self.data.normalization
        if state:
            self.model = model_from_state(state, self.device)
        else:
            self.model = setup.new_model(cfg, self.data, self.device)
        self.schedule = GridSchedule(cfg.N_voxel_init, cfg.N_voxel_final, tuple(cfg.upsamp_list),
                                     tuple(cfg.update_AlphaMask_list))
        self.sampler = EpochSampler(self.data.n_train_rays, cfg.batch_size, cfg.seed)
        self.keypoints = None if self.data.keypoints is None else KeypointSampler(
            self.data.keypoints, max(1, int(cfg.batch_size * cfg.depth_batch_fraction)), cfg.seed + 2, self.device)
        self.weights = ObjectiveWeights(cfg.TV_weight_density, cfg.TV_weight_app, cfg.TV_dynamic_factor,
                                        cfg.variation_weight, cfg.depth_loss)
        self.variation_ready = bool(self.model.cfg.static_only) or cfg.n_variation_iters <= 0
        self.environment = setup.environment()
        self.use_amp = bool(cfg.amp) and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.step = 0
        self.history: dict[str, list] = {"iteration": [], "time_s": [], "loss": [], "psnr": [], "loss_terms": []}
        self.last_terms: dict[str, torch.Tensor] = {}
        self.elapsed = 0.0
        self.rebuild_optimizer()
        if state:
            self._restore(state)

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
        if extra.get("scaler"):
            self.scaler.load_state_dict(extra["scaler"])
        if self.keypoints is not None and extra.get("depth"):
            self.keypoints.load_state_dict(extra["depth"])
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
        self.optimizer = torch.optim.Adam(groups, betas=(0.9, 0.99))
        self._set_lr()

    def _set_lr(self) -> None:
        f = lr_factor(self.step, self.cfg.n_iters, self.cfg.lr_decay, self.cfg.lr_decay_target_ratio)
        for g in self.optimizer.param_groups:
            g["lr"] = g["initial_lr"] * f

    def save(self) -> Path:
        path = self.run_dir / "ckpt.pt"
        extra = {"sampler": self.sampler.state_dict(), "history": self.history, "elapsed": self.elapsed,
                 "rng": setup.rng_state(), "cameras": self.data.camera_table(),
                 "scaler": self.scaler.state_dict() if self.use_amp else None,
                 "depth": self.keypoints.state_dict() if self.keypoints is not None else None,
                 "variation_ready": self.variation_ready, "environment": self.environment}
        save_checkpoint(path, self.model, self.norm, vars(self.cfg), self.step, self.optimizer, extra)
        return path

    def _write_history(self) -> None:
        tmp = self.run_dir / ".history.json.tmp"
        tmp.write_text(json.dumps(self.history))
        tmp.replace(self.run_dir / "history.json")

    # ------------------------------------------------------------------ training
    def fit(self) -> Path:
        """Train to ``n_iters``; returns the final checkpoint. SIGINT/SIGTERM: save, then TrainingInterrupted."""
        save_config(self.cfg, self.run_dir / "config.txt")
        with StopRequest() as stop:
            if not self.variation_ready:
                self.warmup_variation()
                self.variation_ready = True
            bar = tqdm(total=self.cfg.n_iters, initial=self.step, desc="train", unit="it", dynamic_ncols=True)
            try:
                self._loop(stop, bar)
            finally:
                bar.close()
            ckpt = self.save()
            self._write_history()
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
            self.elapsed = time.perf_counter() - t0
            self.after_step()
            if self.step % self.cfg.progress_refresh_rate == 0 or self.step == self.cfg.n_iters:
                self._log(loss, psnr, bar)
            if self.step % self.cfg.save_every == 0:
                self.save()

    def _stop(self, stop: StopRequest, ckpt: Path) -> None:
        self._write_history()
        raise TrainingInterrupted(f"{stop.name} at iteration {self.step}/{self.cfg.n_iters}: checkpoint saved to "
                                  f"{ckpt}; continue with --resume 1 --ckpt {ckpt}")

    def _log(self, loss: float, psnr: float, bar) -> None:
        for key, val in zip(("iteration", "time_s", "loss", "psnr"), (self.step, self.elapsed, loss, psnr)):
            self.history[key].append(val)
        # one {term name: value} per logged iteration (terms such as "depth" exist only when active)
        self.history.setdefault("loss_terms", []).append({k: float(v) for k, v in self.last_terms.items()})
        rays_s = self.step * self.cfg.batch_size / max(self.elapsed, 1e-9)
        bar.set_postfix(loss=f"{loss:.4f}", psnr=f"{psnr:.2f}", rays_s=f"{rays_s:.0f}")
        bar.update(self.step - bar.n)

    def autocast(self):
        if self.use_amp:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def step_scales(self) -> StepScales:
        c = self.cfg
        return StepScales(tv_scale(self.step, c.n_iters, c.lr_decay, c.lr_decay_target_ratio),
                          depth_weight(self.step, c.n_iters, c.depth_lambda, c.depth_lambda_decay))

    def train_step(self) -> tuple[float, float]:
        self._set_lr()
        batch = self.data.gather(self.sampler.next()).to(self.device)  # colours (+ dense depth targets)
        keypoints = self.keypoints.next() if self.keypoints is not None else None  # sparse depth rays
        label = batch.std > self.cfg.temporal_variance_threshold
        scales = self.step_scales()
        with self.autocast():
            out = self.model(batch, jitter=True, ray_dynamic=None if self.model.cfg.static_only else label)
            terms = self.model.loss_terms(batch, out, label, self.weights, scales)
            if keypoints is not None:  # static rays: the dynamic branch stays off
                kp_out = self.model(keypoints, jitter=True, ray_dynamic=torch.zeros(
                    len(keypoints), dtype=torch.bool, device=self.device))
                terms.update(self.model.keypoint_terms(keypoints, kp_out, self.weights, scales))
        loss = sum(terms.values())
        self.last_terms = {k: v.detach() for k, v in terms.items()}
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        with torch.no_grad():
            mse = losses.mse(out.rgb.float().expand_as(batch.rgb), batch.rgb) if self.model.cfg.static_only \
                else losses.mse(out.rgb.float(), batch.rgb)
        return float(loss.detach()), float(-10 * torch.log10(mse))

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
        if changed:
            self.rebuild_optimizer()
            log.debug("grid %s, %d samples/ray", self.model.resolution, self.model.n_samples)

    def warmup_variation(self) -> None:
        """Pre-train the variation field against the std label (cheap: no colour heads)."""
        n = self.cfg.n_variation_iters
        if n <= 0:
            return
        params = self.model.variation.grid_parameters()
        opt = torch.optim.Adam(params, lr=self.cfg.lr_init, betas=(0.9, 0.99))
        sampler = EpochSampler(self.data.n_train_rays, self.cfg.batch_size, self.cfg.seed + 1)
        for _ in tqdm(range(n), desc="variation warm-up", unit="it", leave=False):
            batch = self.data.gather(sampler.next()).to(self.device)
            logit = self.model.ray_variation_logit(batch, jitter=True)
            loss = losses.variation_bce(logit, batch.std > self.cfg.temporal_variance_threshold)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

"""GPU-only checks (skipped without CUDA; ``pytest -m gpu`` runs just these): a training step with and without
mixed precision, rendering and evaluation on the device, and a resume. CPU counterparts of the same code paths
run in test_amp.py, test_render_budget.py and test_resume.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.checkpoint import load_model
from engine.evaluation.evaluate import evaluate_camera
from engine.render.frames import RenderSettings, render_pose
from engine.train.trainer import Trainer
from engine.workflow import finish_training
from models.types import RayBatch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def cuda_cfg(make_cfg, name: str, amp: int, n_iters: int = 6, extra=()):
    return make_cfg(name, n_iters=n_iters, upsamp_list=(2,), alpha_mask_list=(4,),
                    extra=["--device", "cuda", "--amp", str(amp), *extra])


@pytest.mark.parametrize("amp", [0, 1])
def test_training_step_on_cuda(make_cfg, amp):
    trainer = Trainer(cuda_cfg(make_cfg, f"gpu_step_{amp}", amp))
    assert trainer.device.type == "cuda" and trainer.precision.enabled == bool(amp)
    before = [p.detach().clone() for p in trainer.model.density.grid_parameters()]
    loss, psnr = trainer.train_step()
    assert loss.device.type == "cuda" and torch.isfinite(loss) and torch.isfinite(psnr)
    assert all(not torch.equal(a, b) for a, b in zip(before, trainer.model.density.grid_parameters()))
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # autocast never casts weights


def test_pinned_batch_copies_to_the_device():
    b = RayBatch(torch.rand(8, 3), torch.rand(8, 3), rgb=torch.rand(8, 2, 3), std=torch.rand(8)).pin_memory()
    assert b.origins.is_pinned() and b.rgb.is_pinned() and b.depth is None
    moved = b.to("cuda")
    torch.testing.assert_close(moved.rgb.cpu(), b.rgb)


@pytest.fixture(scope="module")
def gpu_run(make_cfg):
    trainer = Trainer(cuda_cfg(make_cfg, "gpu_run", 1, extra=["--save_every", "3"]))
    ckpt = trainer.fit()
    finish_training(trainer, ckpt)  # unlocks the run dir, which test_resume_on_cuda trains into again
    return trainer, ckpt


def test_render_on_cuda_matches_cpu(gpu_run):
    trainer, ckpt = gpu_run
    data, k = trainer.data, trainer.data.test_idx[0]
    args = (data.c2w[k], data.h, data.w, data.focal, data.normalization)
    gpu = render_pose(load_model(ckpt, "cuda")[0].eval(), *args, "cuda", RenderSettings(budget_mb=1))
    cpu = render_pose(load_model(ckpt, "cpu")[0].eval(), *args, "cpu")
    assert (gpu.dynamic == cpu.dynamic).mean() > 0.99  # a ray at the threshold may flip
    assert np.abs(gpu.rgb - cpu.rgb).mean() < 1e-3 and np.median(np.abs(gpu.depth - cpu.depth)) < 1e-3


def test_evaluation_on_cuda_with_amp(gpu_run):
    trainer, _ = gpu_run
    model = trainer.model.eval()
    fp32, _ = evaluate_camera(model, trainer.data, trainer.data.test_idx[0], trainer.device)
    amp, ev = evaluate_camera(model, trainer.data, trainer.data.test_idx[0], trainer.device,
                              settings=RenderSettings(trainer.precision))
    assert np.isfinite(amp["psnr"]) and abs(amp["psnr"] - fp32["psnr"]) < 0.5
    assert ev.rgb8.shape == trainer.data.frames_of(0).shape


def test_resume_on_cuda(gpu_run, make_cfg):
    trainer, ckpt = gpu_run
    cfg = cuda_cfg(make_cfg, "gpu_run", 1, n_iters=8, extra=["--save_every", "3", "--resume", "1", "--ckpt",
                                                              str(ckpt)])
    resumed = Trainer(cfg)
    assert resumed.step == 6 and resumed.model.alpha_mask is not None
    resumed.fit()
    assert resumed.step == 8 and np.isfinite(resumed.history["loss"][-1])


def test_ssim_on_cuda_matches_cpu():
    """cuDNN may run float32 convolutions in TF32: the SSIM filter must not (it would move SSIM by ~1e-2)."""
    from engine.evaluation.metrics import ssim_batch

    g = torch.Generator().manual_seed(0)
    gt = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 64, 64, generator=g), 5, 1, 2).permute(0, 2, 3, 1) * 0.6 + 0.2
    pred = (gt + 0.03 * torch.randn(gt.shape, generator=g)).clamp(0, 1)
    cpu = ssim_batch(pred, gt)
    torch.testing.assert_close(ssim_batch(pred.cuda(), gt.cuda()).cpu(), cpu, rtol=0, atol=1e-6)

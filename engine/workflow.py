"""What happens after training: evaluation, plots, metrics.json and a one-line summary."""
from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import numpy as np
import torch

from engine.evaluate import evaluate_cameras, write_metrics
from engine.visualize import plot_training_curves


def toolkit_version() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parents[1], timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment() -> dict:
    return {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "toolkit_commit": toolkit_version()}


def finish_training(trainer, ckpt: Path) -> str:
    """Evaluate test cameras (if asked), write metrics.json and plots; return a summary line."""
    run_dir, cfg = trainer.run_dir, trainer.cfg
    plot_training_curves(trainer.history, run_dir / "training_curves.png")
    metrics = {"iterations": trainer.step, "train_time_s": trainer.elapsed, "environment": environment(),
               "grid_resolution": trainer.model.resolution, "test": {}}
    if cfg.render_test and trainer.data.test_idx:
        metrics["test"] = evaluate_cameras(trainer.model.eval(), trainer.data, trainer.device,
                                           run_dir / "test", cfg.n_test_images)
    write_metrics(run_dir / "metrics.json", metrics)
    parts = [f"{cam}: PSNR {m['psnr']:.2f} dB SSIM {m['ssim']:.4f}" for cam, m in metrics["test"].items()]
    return f"trained {trainer.step} iterations in {trainer.elapsed:.0f} s -> {ckpt}" + (
        "; " + "; ".join(parts) if parts else "")

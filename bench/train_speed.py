"""Training speed on the demo scene: rays/s, iterations/s, peak RSS, test PSNR at wall-clock budgets.

Prints one JSON line per budget and a final summary line. Evaluation time is excluded from
the budgets. Usage: python -m bench.train_speed [--datadir data/synthetic_demo] [--budgets 60 180 300]
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from engine import options
from engine.evaluation.metrics import video_psnr
from engine.render.frames import render_pose
from engine.train.trainer import Trainer


def test_psnr(trainer: Trainer) -> float:
    data, k = trainer.data, trainer.data.test_idx[0]
    trainer.model.eval()
    r = render_pose(trainer.model, data.c2w[k], data.h, data.w, data.focal, data.normalization, trainer.device)
    trainer.model.train()
    return video_psnr(r.rgb, data.frames_of(k).astype(np.float32) / 255.0)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--datadir", default="data/synthetic_demo")
    p.add_argument("--config", default="configs/demo.txt")
    p.add_argument("--budgets", type=float, nargs="+", default=[60, 180, 300])
    p.add_argument("--device", default="auto")
    args, rest = p.parse_known_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = options.resolve(options.parse(["--config", args.config, "--datadir", str(Path(args.datadir).resolve()),
                                     "--basedir", tmp, "--device", args.device, "--render_test", "0", *rest]))
        trainer = Trainer(cfg)
        budgets = sorted(args.budgets)
        train_s, steps = 0.0, 0
        t_warm = time.perf_counter()
        if not trainer.model.cfg.static_only:
            trainer.warmup_variation()
        warmup_s = time.perf_counter() - t_warm
        for budget in budgets:
            while train_s < budget and trainer.step < cfg.n_iters:
                t0 = time.perf_counter()
                trainer.train_step()
                trainer.step += 1
                trainer.after_step()
                if trainer.device.type == "cuda":
                    torch.cuda.synchronize()
                train_s += time.perf_counter() - t0
                steps += 1
            print(json.dumps({"budget_s": budget, "iterations": trainer.step, "train_s": round(train_s, 2),
                              "test_psnr": round(test_psnr(trainer), 3),
                              "finished_schedule": trainer.step >= cfg.n_iters}), flush=True)
        print(json.dumps({
            "summary": True, "device": str(trainer.device), "cpu_threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
            "batch_size": cfg.batch_size, "iterations": steps, "train_s": round(train_s, 2),
            "variation_warmup_s": round(warmup_s, 2),
            "iterations_per_s": round(steps / train_s, 3), "rays_per_s": round(steps * cfg.batch_size / train_s, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1), "final_resolution": trainer.model.resolution,
            "samples_per_ray": trainer.model.n_samples}), flush=True)


if __name__ == "__main__":
    main()

"""Evaluate a checkpoint on its test cameras (the same code that runs at the end of training).

Writes, in the checkpoint's run dir: ``metrics.json`` (PSNR whole-video and per-frame mean, SSIM and
DSSIM with data range 1.0, LPIPS/FLIP/JOD or the reason they are unavailable, depth AbsRel/RMSE/
delta<1.25 on test and training cameras when ``gt_depth/`` exists), ``test/<cam>_per_frame.csv``,
pictures under ``test/`` (frames | ground truth | error heat map, colourised depth, per-frame PSNR
plot), ``training_curves.png`` and ``report.html`` (static; open it in a browser).
"""
from __future__ import annotations

import argparse

from engine.cli import run_main
from engine.workflow import evaluate_checkpoint


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True, help="checkpoint (RUN/ckpt.pt)")
    p.add_argument("--datadir", default="", help="scene dir (default: the one stored in the checkpoint)")
    p.add_argument("--n_images", type=int, default=3, help="evenly spaced frames drawn as pictures")
    p.add_argument("--picture_frames", type=int, nargs="*", default=None, help="frames to draw instead")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    p.add_argument("--amp", type=int, default=-1, choices=(-1, 0, 1),
                   help="mixed precision: -1 auto (on for CUDA, off for CPU), 0 float32, 1 autocast")
    p.add_argument("--render_budget_mb", type=float, default=-1,
                   help="memory for one ray chunk's working set (-1: 6144 on CUDA, at most half the free memory; "
                        "192 on CPU)")
    args = p.parse_args()
    print(evaluate_checkpoint(args.ckpt, args.device, args.datadir, args.n_images, args.picture_frames, args.amp,
                              args.render_budget_mb))


def cli() -> None:
    """Console entry point (see pyproject.toml)."""
    run_main(main)


if __name__ == "__main__":
    cli()

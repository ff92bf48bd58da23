"""Render one camera's full video from a checkpoint alone (no config or dataset needed).

Output: ``<run dir>/videos/<camera>_rgb.mp4`` (or ``--out``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from dataLoader.errors import UserError
from engine.checkpoint import load_model
from engine.cli import run_main
from engine.render import render_camera_video
from engine.setup import pick_device


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ckpt", required=True, help="checkpoint (RUN/ckpt.pt)")
    p.add_argument("--cam_num", type=int, default=0, help="camera index (row of poses_bounds.npy)")
    p.add_argument("--out", default="", help="output mp4 (default: RUN/videos/<cam>_rgb.mp4)")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    device = pick_device(args.device)
    model, norm, state = load_model(args.ckpt, device)
    cams = state["extra"].get("cameras")
    if not cams:
        raise UserError(f"{args.ckpt}: checkpoint holds no camera table")
    if not 0 <= args.cam_num < len(cams["names"]):
        raise UserError(f"--cam_num {args.cam_num} out of range: the rig has {len(cams['names'])} cameras")
    out = Path(args.out) if args.out else Path(args.ckpt).parent / "videos" / f"{cams['names'][args.cam_num]}_rgb.mp4"
    out.parent.mkdir(parents=True, exist_ok=True)
    n = render_camera_video(model, norm, cams, args.cam_num, out, device, args.fps)
    print(f"wrote {n} frames of {cams['names'][args.cam_num]} to {out}")


if __name__ == "__main__":
    run_main(main)

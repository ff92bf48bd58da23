"""Stage: validate a static capture and build its T = 1 training cache (SPEC §5.1).

Input ``D/frames/camXX/<one .png/.jpg>`` (one photo per camera position, at least 2, any names,
gaps in the numbering allowed, one image size) and ``D/poses_bounds.npy`` (one row per camera
folder, sorted; ``poses_bounds_cams.txt`` names checked when present), in the same world as the
video rig (``imgs2poses.py VIDEO --static_dir D``). Output: ``D/cache/<key>/`` only (resized
uint8 frames, T = 1; no per-frame copies), which ``train.py --datadir D --static_only 1`` reads.
"""
from __future__ import annotations

import argparse

from engine.cli import run_main
from engine.render.static_depth import prepare_static_capture


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--static_data_path", required=True, help="static capture directory D")
    p.add_argument("--downsample", type=float, default=1.0,
                   help="divide the image size by this (use the same value as train.py --downsample_train)")
    args = p.parse_args(argv)
    cap = prepare_static_capture(args.static_data_path, args.downsample)
    (h0, w0), (h, w) = cap.hw, cap.cache_hw
    print(f"static capture {cap.datadir}: {len(cap.cam_names)} views {w0}x{h0} -> {w}x{h}, cache {cap.cache_dir}; "
          f"train: python train.py --config configs/depth/static_capture.txt --datadir {cap.datadir} "
          f"--downsample_train {args.downsample:g}")


if __name__ == "__main__":
    run_main(main)

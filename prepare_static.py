"""Stage: validate a static capture and build its T = 1 training cache.

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
from engine.stage_args import add_datadir, add_downsample, datadir_of, parse_with_config


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", help="config: its datadir, data_root and downsample are used")
    add_datadir(p, help="static capture directory D")
    p.add_argument("--static_data_path", dest="datadir", help="same as --datadir (the depth fork's name)")
    add_downsample(p)
    args = parse_with_config(p, argv, ("datadir", "data_root", "downsample"))
    cap = prepare_static_capture(datadir_of(args), args.downsample)
    (h0, w0), (h, w) = cap.hw, cap.cache_hw
    print(f"static capture {cap.datadir}: {len(cap.cam_names)} views {w0}x{h0} -> {w}x{h}, cache {cap.cache_dir}; "
          f"train: python train.py --config configs/depth/static_capture.txt --datadir {cap.datadir} "
          f"--downsample {args.downsample:g}")


def cli() -> None:
    """Console entry point (see pyproject.toml)."""
    run_main(main)


if __name__ == "__main__":
    cli()

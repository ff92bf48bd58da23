"""Stage: multi-camera videos -> lossless frames.

Reads ``DATADIR/*.mp4`` (or ``DATADIR/videos/*.mp4``), writes
``DATADIR/frames/<video stem>/NNNN.png`` (uint8 RGB, numbered from 0000 =
video frame ``--frame_start``). See :mod:`dataLoader.video_io` for the contract.
"""
from __future__ import annotations

import configargparse

from dataLoader.video_io import extract_frames
from engine.cli import run_main


def build_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", is_config_file=True, help="optional key = value config file")
    p.add_argument("datadir", help="scene directory holding *.mp4 or videos/*.mp4")
    p.add_argument("--frame_start", type=int, default=0, help="first video frame to extract (0-based)")
    p.add_argument("--n_frames", type=int, default=-1, help="number of frames (-1: to the end)")
    p.add_argument("--downsample", type=float, default=1.0, help="divide width and height by this (>= 1)")
    p.add_argument("--overwrite", type=int, default=0, choices=(0, 1), help="replace existing frames")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    summary = extract_frames(args.datadir, args.frame_start, args.n_frames, args.downsample,
                             bool(args.overwrite))
    print(summary.line())


if __name__ == "__main__":
    run_main(main)

"""Stage: multi-camera videos -> lossless frames.

Reads ``DATADIR/*.mp4`` (or ``DATADIR/videos/*.mp4``), writes
``DATADIR/frames/<video stem>/NNNN.png`` (uint8 RGB, numbered from 0000 =
video frame ``--frame_start``). See :mod:`dataLoader.video_io` for the contract.
"""
from __future__ import annotations

import argparse

from dataLoader.video_io import extract_frames
from engine.cli import run_main
from engine.stage_args import add_datadir, add_downsample, datadir_of, parse_with_config


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", help="scene config: its datadir, data_root and downsample are used (not its frame "
                   "range: extract from the video's start and let training select frames)")
    add_datadir(p, help="scene directory holding *.mp4 or videos/*.mp4")
    p.add_argument("--frame_start", type=int, default=0, help="first video frame to extract (0-based)")
    p.add_argument("--n_frames", type=int, default=-1, help="number of frames (-1: to the end)")
    add_downsample(p)
    p.add_argument("--overwrite", type=int, default=0, choices=(0, 1), help="replace existing frames")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parse_with_config(build_parser(), argv, ("datadir", "data_root", "downsample"))
    summary = extract_frames(datadir_of(args), args.frame_start, args.n_frames, args.downsample,
                             bool(args.overwrite))
    print(summary.line())


def cli() -> None:
    """Console entry point (see pyproject.toml)."""
    run_main(main)


if __name__ == "__main__":
    cli()

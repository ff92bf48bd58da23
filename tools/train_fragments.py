"""Train a long video as consecutive fragments, each a normal run dir ``<basedir>/<expname>_fSSSSS``.

    python -m tools.train_fragments --config C --fragment_len 150 [--gpus 0,1] [any train.py key ...]

The config's ``frame_start``/``n_frames`` select the range to split (default: the whole video).
Without ``--gpus`` (or with one GPU) fragments train one after another in this process; with
several, one process per GPU (torch.multiprocessing spawn). Re-running the same command skips
finished fragments and resumes unfinished ones. Join the fragments' videos with
``render_one_video.py --ckpt FIRST/ckpt.pt --fragments OTHERS/ckpt.pt ...`` (the command is printed).
"""
from __future__ import annotations

import argparse

from engine.cli import run_main
from engine.train.fragments import parse_devices, train_fragments


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--fragment_len", type=int, required=True, help="frames per fragment (the last may be shorter)")
    p.add_argument("--gpus", default="", help="comma-separated GPU indices, one training process each (e.g. 0,1)")
    args, train_argv = p.parse_known_args()
    print(train_fragments(train_argv, args.fragment_len, parse_devices(args.gpus)))


def cli() -> None:
    """Console entry point (see pyproject.toml)."""
    run_main(main)


if __name__ == "__main__":
    cli()

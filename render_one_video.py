"""Render a video from a checkpoint alone (no config or dataset needed).

Camera video:  render_one_video.py --ckpt RUN/ckpt.pt --cam_num N [--mode rgb|depth|rgbd] [--frames a:b]
Camera path:   render_one_video.py --ckpt RUN/ckpt.pt --path spiral|circle|bullet_time [--n_views 120]
               render_one_video.py --ckpt RUN/ckpt.pt --path_file poses.json
Fragments:     render_one_video.py --ckpt RUN_f00000/ckpt.pt --fragments RUN_f00150/ckpt.pt ... (one joined mp4,
               in frame order, under <basedir>/<expname>_stitched/; see engine/train/fragments.py)

Output: ``RUN/videos/<name>_<mode>.mp4`` (``--out_dir`` to change), where <name> is the camera
name (e.g. ``cam03``, ``cam03_f0010-0019`` for a frame range) or ``path_spiral``, ``path_circle``,
``path_bullet_time_tNNNN``, ``path_<file stem>``; ``_dsK`` is appended for ``--downsample K``.
``--png 1`` also writes the frames as ``<same name>/NNNN.png``. ``rgbd`` puts the colourised depth
(disparity colours, one range per video) to the right of the colour image.

Paths: pose i is rendered at time (frames start + i mod frame count); bullet time freezes
``--freeze_frame`` and sweeps across the rig. Poses come from the training cameras stored in the
checkpoint and its scene normalization. Each ray renders all T frames (MixVoxels' time heads),
so a path costs T-fold per pose: fine on a CPU at demo sizes.

Path file format (JSON; c2w in world units, OpenGL axes [right, up, back] + centre, det +1)::

    {"frames": [{"c2w": [[...4 numbers...], [...], [...]], "time": 0}, ...],
     "focal": 60.0, "hw": [72, 96]}          # focal (pixels at hw) and hw are optional
"""
from __future__ import annotations

import argparse

import configargparse

from engine.cli import run_main
from engine.render.camera_paths import PATHS
from engine.render.frames import MODES
from engine.stage_args import DOWNSAMPLE_HELP
from engine.train.fragments import render_fragments
from engine.workflow import VideoRequest, render_video


def build_parser() -> configargparse.ArgumentParser:
    d = VideoRequest(ckpt="")  # the defaults live in the request
    p = configargparse.ArgumentParser(description=__doc__.splitlines()[0], ignore_unknown_config_file_keys=True,
                                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", is_config_file=True,
                   help="optional key = value file; a training config is accepted (only this script's keys are read)")
    p.add_argument("--ckpt", required=True, help="checkpoint (RUN/ckpt.pt)")
    p.add_argument("--cam_num", type=int, default=d.cam_num, help="camera index (row of poses_bounds.npy)")
    p.add_argument("--mode", default=d.mode, choices=MODES, help="colour, depth, or both side by side")
    p.add_argument("--frames", default=d.frames, help="frame range a:b (b exclusive; empty: all frames)")
    p.add_argument("--fps", type=float, default=d.fps, help="video frame rate")
    p.add_argument("--downsample", "--downsample_train", dest="downsample", type=float, default=d.downsample,
                   help=DOWNSAMPLE_HELP + " (0: the size the model was trained at)")
    p.add_argument("--path", default=d.path, choices=("",) + PATHS, help="render a camera path instead of a camera")
    p.add_argument("--render_path", type=int, default=0, choices=(0, 1), help="seed-workflow alias of --path spiral")
    p.add_argument("--path_file", default=d.path_file, help="JSON camera path (format above)")
    p.add_argument("--n_views", type=int, default=d.n_views, help="poses in a generated path")
    p.add_argument("--freeze_frame", type=int, default=d.freeze_frame, help="bullet_time: the frozen frame")
    p.add_argument("--png", type=int, default=d.png, choices=(0, 1), help="also write PNG frames")
    p.add_argument("--out_dir", default=d.out_dir, help="output folder (empty: RUN/videos)")
    p.add_argument("--max_buffer_mb", type=int, default=d.max_buffer_mb,
                   help="float frames kept in RAM (beyond: a temp file)")
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--overwrite", type=int, default=d.overwrite, choices=(0, 1),
                   help="1: replace an existing video/PNGs")
    p.add_argument("--amp", type=int, default=d.amp, choices=(-1, 0, 1),
                   help="mixed precision: -1 auto (on for CUDA, off for CPU), 0 float32, 1 autocast")
    p.add_argument("--render_budget_mb", type=float, default=d.render_budget_mb,
                   help="memory for one ray chunk's working set (-1: 6144 on CUDA, at most half the free memory; "
                        "192 on CPU)")
    p.add_argument("--fragments", nargs="*", default=[],
                   help="other fragment checkpoints (train_fragments.py): rendered like --ckpt, joined in order")
    return p


def main() -> None:
    args = vars(build_parser().parse_args())
    args.pop("config")
    fragments = args.pop("fragments")
    if args.pop("render_path") and not args["path"]:
        args["path"] = "spiral"
    req = VideoRequest(**args)
    print(render_fragments(req, fragments) if fragments else render_video(req))


def cli() -> None:
    """Console entry point (see pyproject.toml)."""
    run_main(main)


if __name__ == "__main__":
    cli()

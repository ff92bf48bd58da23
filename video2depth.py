"""Stage: plane-sweep stereo on a video rig's temporal medians -> ``depth/video_depth.npz``.

Depth for the dense depth loss without a still capture: every training camera's temporal median is
matched against the other training cameras' (:mod:`engine.plane_sweep`); only depth with a strong,
textured match that neighbour cameras confirm is kept, so the maps are semi-dense. The held-out
(test) cameras' images are not used. Per camera the fraction of pixels with depth and the consistency
error are printed; a camera left with almost no depth gets a warning (too little texture, or a baseline
too narrow or too wide for its matches). Train with ``--depth_config configs/depth/video_mvs.txt``.
Output (``dataLoader.depth_files``, the format of ``static_model2depth.py``): depth [K, H, W] float32
world-unit camera z, mask [K, H, W] bool, weight [K, H, W] (1 where kept), cam_names, hw, world c2w, the
normalization; beside it one preview PNG per camera (``video_depth_<cam>.png``).
``--config`` may be the dynamic run's config: datadir, data_root, downsample, exclude_cams, test_cams, the
frame range and depthmap_npy_path are read from it; its other keys are ignored.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from core.errors import UserError
from dataLoader.dataset import DataOptions, VideoDataset
from dataLoader.depth_files import save_dense_depth
from dataLoader.scene_layout import VIDEO_DEPTH, SceneDir
from engine.cli import run_main
from engine.depth_previews import dense_summary, save_dense_previews
from engine.plane_sweep import SweepOptions, video_depth
from engine.stage_args import add_datadir, add_downsample, datadir_of, parse_with_config
from engine.train.setup import pick_device

CONFIG_KEYS = ("datadir", "data_root", "downsample", "exclude_cams", "test_cams", "frame_start", "n_frames",
               "depthmap_npy_path")


def build_parser() -> argparse.ArgumentParser:
    d = SweepOptions()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--config", help="the dynamic run's config (optional)")
    add_datadir(p, positional=False, help="video scene (poses_bounds.npy, frames/camXX/)")
    add_downsample(p)
    p.add_argument("--exclude_cams", nargs="*", default=[], help="cameras left out (as in training)")
    p.add_argument("--test_cams", type=int, nargs="*", default=[0], help="held-out cameras (neither matched nor used)")
    p.add_argument("--frame_start", type=int, default=0, help="first frame of the medians (as in training)")
    p.add_argument("--n_frames", type=int, default=-1, help="frames of the medians (-1: all)")
    p.add_argument("--depthmap_npy_path", default=VIDEO_DEPTH, help="output (relative to datadir)")
    p.add_argument("--n_planes", type=int, default=d.n_planes, help="depth planes, uniform in inverse depth")
    p.add_argument("--window", type=int, default=d.window, help="matching window side in pixels (odd)")
    p.add_argument("--min_score", type=float, default=d.min_score, help="least ZNCC of a kept match (-1..1)")
    p.add_argument("--max_step", type=float, default=d.max_step,
                   help="no depth where the matching window spans a relative depth step above this (0 = off)")
    p.add_argument("--consistency_tol", type=float, default=d.consistency_tol,
                   help="relative depth difference with a neighbour camera that still confirms a pixel")
    p.add_argument("--min_agree", type=int, default=d.min_agree, help="neighbour cameras that must confirm a pixel")
    p.add_argument("--fill_planes", type=int, default=d.fill_planes,
                   help="hole filling: pixels left out take their best plane within this many planes of the depth "
                        "spread from kept pixels nearby (0 = off)")
    p.add_argument("--fill_min_score", type=float, default=d.fill_min_score,
                   help="least ZNCC of a filled pixel's plane")
    p.add_argument("--overwrite", type=int, default=0, choices=(0, 1), help="1: replace an existing depth file")
    p.add_argument("--device", default="auto", help="where the sweep runs: auto, cpu, cuda, cuda:1 ...")
    return p


def sweep_options(a: argparse.Namespace) -> SweepOptions:
    if a.window < 3 or a.window % 2 == 0:
        raise UserError(f"--window {a.window}: must be an odd number >= 3")
    if a.n_planes < 3:
        raise UserError(f"--n_planes {a.n_planes}: at least 3 needed")
    return SweepOptions(n_planes=a.n_planes, window=a.window, min_score=a.min_score, max_step=a.max_step,
                        consistency_tol=a.consistency_tol, min_agree=a.min_agree, fill_planes=a.fill_planes,
                        fill_min_score=a.fill_min_score)


def main(argv: list[str] | None = None) -> None:
    a = parse_with_config(build_parser(), argv, CONFIG_KEYS)
    opts = sweep_options(a)
    datadir = SceneDir(datadir_of(a)).root
    out = SceneDir(datadir).resolve(a.depthmap_npy_path)
    if out.exists() and not a.overwrite:
        raise UserError(f"{out}: exists; pass --overwrite 1 to replace it")
    data = VideoDataset(DataOptions(Path(datadir), a.downsample, a.frame_start, a.n_frames, tuple(a.test_cams),
                                    exclude_cams=tuple(a.exclude_cams)))
    if len(data.train_idx) < 2:
        raise UserError(f"{datadir}: plane sweep needs at least two training cameras ({len(data.train_idx)} left)")
    dense, _ = video_depth(data, opts, pick_device(a.device))
    if not dense.mask.any():
        raise UserError(f"{datadir}: no pixel has a confirmed match (textureless medians, or cameras that do not "
                        f"overlap); nothing written")
    save_dense_depth(out, dense)
    save_dense_previews(out, dense.depth, dense.mask, dense.cam_names)
    print(dense_summary(out, dense))


def cli() -> None:
    """Console entry point (see pyproject.toml)."""
    run_main(main)


if __name__ == "__main__":
    cli()

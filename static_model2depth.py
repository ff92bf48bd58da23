"""Stage: render a static model's depth at a video rig's cameras -> ``depth/all_depth.npz``.

The static checkpoint's own normalization is applied to the rig's world poses (both captures
must share one world: ``imgs2poses.py VIDEO --static_dir STATIC``); cameras outside the static
capture's world are refused. Maps are rendered at the video dataset's training size. Every map
is checked against its neighbour cameras (reprojected depth must agree, as MVS filtering does):
per camera the fraction kept and the consistency error are printed, only agreeing depth is kept,
and inconsistent depth is refused unless ``--allow_inconsistent 1``. The static run's held-out
views' PSNR (train it with ``--test_cams``) is printed too.
Output (``dataLoader.depth_files``): depth [K, H, W] float32 world-unit camera z, mask [K, H, W]
bool, weight [K, H, W] (static opacity), cam_names, hw, world c2w, the normalization; beside it one
preview PNG per camera (``all_depth_<cam>.png``: depth with a world-unit colour bar | mask).
``--config`` may be the dynamic run's config: datadir, data_root, downsample, exclude_cams, test_cams
and depthmap_npy_path are read from it; its other keys are ignored.
"""
from __future__ import annotations

import configargparse

from dataLoader.scene_layout import DENSE_DEPTH, SceneDir
from engine.cli import run_main
from engine.depth_previews import dense_summary, save_dense_previews
from engine.render.static_depth import DEPTH_STATS, ExportOptions, export_depth_file, report_held_out
from engine.stage_args import add_datadir, add_downsample, datadir_of
from engine.train.setup import pick_device


def build_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(description=__doc__.splitlines()[0], ignore_unknown_config_file_keys=True,
                                      config_file_parser_class=configargparse.DefaultConfigFileParser)
    p.add_argument("--config", is_config_file=True, help="the dynamic run's config (optional)")
    p.add_argument("--ckpt", required=True, help="STATIC model checkpoint (train.py --static_only 1)")
    add_datadir(p, positional=False, help="video scene (poses_bounds.npy, frames/camXX/)")
    p.add_argument("--exclude_cams", nargs="*", default=[], help="cameras left out (as in training)")
    p.add_argument("--cam_num_list", type=int, nargs="*", default=None,
                   help="camera rows to render (default: all but --test_cams)")
    p.add_argument("--test_cams", type=int, nargs="*", default=[0], help="held-out cameras (not rendered)")
    add_downsample(p)
    p.add_argument("--depthmap_npy_path", default=DENSE_DEPTH, help="output (relative to datadir)")
    p.add_argument("--depth_stat", default="median", choices=DEPTH_STATS, help="per-pixel depth statistic")
    p.add_argument("--acc_min", type=float, default=0.5, help="no depth where static opacity is below this")
    p.add_argument("--spread_max", type=float, default=0.5,
                   help="no depth where the middle half of the ray termination spans more than this x depth")
    p.add_argument("--consistency_tol", type=float, default=0.05,
                   help="relative depth difference with a neighbour camera that still counts as agreeing")
    p.add_argument("--min_consistent", type=float, default=0.5,
                   help="refuse when fewer of the depth pixels (mean over cameras) agree across cameras")
    p.add_argument("--allow_inconsistent", type=int, default=0, help="1: export inconsistent depth (warns)")
    p.add_argument("--overwrite", type=int, default=0, help="1: replace an existing depth file")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    return p


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    datadir = SceneDir(datadir_of(a)).root
    out = SceneDir(datadir).resolve(a.depthmap_npy_path)
    opts = ExportOptions(a.depth_stat, a.acc_min, a.spread_max, consistency_tol=a.consistency_tol,
                         min_consistent=a.min_consistent, allow_inconsistent=bool(a.allow_inconsistent))
    dense = export_depth_file(a.ckpt, datadir, out, a.cam_num_list, a.test_cams, a.downsample,
                              bool(a.overwrite), pick_device(a.device), opts, tuple(a.exclude_cams))
    report_held_out(a.ckpt)
    save_dense_previews(out, dense.depth, dense.mask, dense.cam_names)
    print(dense_summary(out, dense))


def cli() -> None:
    """Console entry point (see pyproject.toml)."""
    run_main(main)


if __name__ == "__main__":
    cli()

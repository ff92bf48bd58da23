"""Stage: one image per camera -> COLMAP model ``sparse/0/`` and ``poses_bounds.npy`` (SfM).

Inputs: ``DATADIR/frames/camXX/`` (the ``--frame_idx``-th image of each folder,
folders sorted as strings: name them zero-padded, cam00..camNN) or an LLFF
``DATADIR/images/`` folder (every image, sorted numeric-aware: ``2.jpg`` before
``10.jpg``; the camera name is the file stem). With ``--static_dir D`` the static
capture ``D/frames/camXX/`` (exactly one image each) is registered in the same
SfM run, so both captures share one world.

For a dataset that ships its poses (N3DV), do not run this: ``colmap2depth.py --triangulate 1`` builds
the sparse model in the shipped poses' world instead.

Outputs (atomic; existing poses files are kept unless ``--overwrite 1``, which first copies each
replaced ``poses_bounds.npy`` (+ cams file) to ``poses_bounds.backup.npy``, ``.backup2.npy``, ...):
- ``DATADIR/sparse/0/*.bin``: the model. Image names are ``camXX.<ext>`` for the
  rig and ``static/camXX.<ext>`` for the static capture.
- ``DATADIR/poses_bounds.npy`` [K, 17] LLFF, one row per camera in the order
  above, plus ``poses_bounds_cams.txt`` (the names of the rows); with
  ``--static_dir`` also ``D/poses_bounds.npy`` (+ cams file), same world.
  World units are COLMAP's. H, W, focal are those of the model's cameras (the
  image size SfM ran on); near/far are the 0.1/99.9 percentiles of the camera z
  of the points each camera sees.
- With ``--sparse_dir S`` no SfM runs: S is read (images matched to cameras by
  name: ``camXX.*`` / ``static/camXX.*`` / ``<stem>.*``) and copied to
  ``DATADIR/sparse/0`` unless it is that folder.
Forward-facing rigs with small baselines self-calibrate poorly: give a known focal
with ``--focal_prior F --refine_focal 0`` when you have one. If a rig's cameras
have different COLMAP intrinsics (e.g. ``--single_camera 0``
or a reused model), they are averaged with a warning when within 1%, else
refused unless ``--average_intrinsics 1``.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import NamedTuple

from core.errors import UserError
from dataLoader import colmap
from dataLoader.atomic_io import write_bytes
from dataLoader.colmap_points import RigPoses, rig_poses
from dataLoader.poses import cams_file, save_poses_bounds
from dataLoader.scene_layout import SceneDir
from engine.cli import run_main
from engine.stage_args import add_datadir, datadir_of, parse_with_config

log = logging.getLogger("imgs2poses")
STATIC_PREFIX = "static/"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", help="scene config: its datadir and data_root are used")
    add_datadir(p, help="scene folder with frames/camXX/ or images/")
    p.add_argument("--frame_idx", type=int, default=0, help="which frame of each camera folder to use")
    p.add_argument("--static_dir", default="", help="static capture D (D/frames/camXX/, one image each)")
    p.add_argument("--sparse_dir", default="", help="reuse this COLMAP model instead of running SfM")
    p.add_argument("--single_camera", type=int, default=1, help="1: one shared COLMAP camera per capture")
    p.add_argument("--focal_prior", type=float, default=0.0, help="rig focal prior in pixels (0: none)")
    p.add_argument("--static_focal_prior", type=float, default=0.0, help="static focal prior in px (0: none)")
    p.add_argument("--refine_focal", type=int, default=1, help="0: keep the focal prior fixed in SfM")
    p.add_argument("--average_intrinsics", type=int, default=0, help="1: average cameras differing by >1%%")
    p.add_argument("--seed", type=int, default=0, help="COLMAP random seed (the first mapper seed)")
    p.add_argument("--sfm_attempts", type=int, default=4,
                   help="mapper runs with seeds seed, seed+1, ... while cameras are missing")
    p.add_argument("--overwrite", type=int, default=0,
                   help="1: replace existing poses_bounds.npy (a backup copy is kept) / sparse/0")
    return p


class Capture(NamedTuple):
    folder: Path
    prefix: str  # model image names are prefix + camera + ext
    images: list[tuple[str, Path]]  # (camera name, image file) in row order
    focal_prior: float | None
    hw: tuple[int, int]  # image size on disk


def _capture(folder: Path, prefix: str, images: list[tuple[str, Path]], prior: float) -> Capture:
    hw = colmap.common_image_size([p for _, p in images], str(folder))
    return Capture(folder, prefix, images, prior or None, hw)


def _captures(args) -> list[Capture]:
    datadir = Path(args.datadir)
    caps = [_capture(datadir, "", colmap.list_capture_images(datadir, args.frame_idx), args.focal_prior)]
    if args.static_dir:
        static = Path(args.static_dir)
        caps.append(_capture(static, STATIC_PREFIX, colmap.list_capture_images(static, one_each=True),
                             args.static_focal_prior))
    return caps


def _model_dest(args) -> Path | None:
    """Where to write the model (None when --sparse_dir already is DATADIR/sparse/0)."""
    dest = SceneDir(args.datadir).sparse_model
    return None if args.sparse_dir and Path(args.sparse_dir).resolve() == dest.resolve() else dest


def _check_writable(args, caps: list[Capture]) -> None:
    targets = [SceneDir(c.folder).poses for c in caps] + [_model_dest(args)]
    existing = [str(t) for t in targets if t is not None and t.exists()]
    if existing and not args.overwrite:
        raise UserError(f"{existing[0]}: already exists "
                        f"(pass --overwrite 1 to replace {', '.join(existing)})")


def _reconstruct(args, caps: list[Capture]):
    if args.sparse_dir:
        return colmap.read_model(args.sparse_dir)
    groups = [colmap.ImageGroup(tuple(f"{c.prefix}{cam}{path.suffix.lower()}" for cam, path in c.images),
                                tuple(path for _, path in c.images), c.focal_prior) for c in caps]
    with tempfile.TemporaryDirectory(prefix="imgs2poses_") as work:
        opts = colmap.SfmOptions(bool(args.single_camera), bool(args.refine_focal), args.seed,
                                 attempts=args.sfm_attempts)
        return colmap.run_sfm(groups, Path(work), opts)


def main(argv: list[str] | None = None) -> None:
    args = parse_with_config(build_parser(), argv, ("datadir", "data_root"))
    args.datadir = datadir_of(args)
    caps = _captures(args)
    _check_writable(args, caps)
    rec = _reconstruct(args, caps)
    source = args.sparse_dir or "SfM model"
    rigs = [rig_poses(rec, [cam for cam, _ in c.images], c.prefix,
                             allow_average=bool(args.average_intrinsics), source=source) for c in caps]
    dest = _model_dest(args)
    if dest is not None:
        colmap.write_model(rec, dest)
    written = [str(dest)] if dest is not None else []
    for c, rig in zip(caps, rigs, strict=True):
        out = SceneDir(c.folder).poses
        written += backup_poses(out)
        save_poses_bounds(out, rig.c2w, rig.hwf, rig.bounds, names=rig.names)
        written += [str(out), str(cams_file(out))]
        _log_rig(out, rig, c.hw)
    print(f"imgs2poses: {rec.num_reg_images()} images, {rec.num_points3D()} points; "
          f"wrote {', '.join(written)}")


def backup_poses(path: Path) -> list[str]:
    """Copy an existing poses file (+ its cams file) to the first free ``<stem>.backup[N].npy``; -> copies."""
    if not path.exists():
        return []
    n = 1
    while (dst := path.with_name(f"{path.stem}.backup{'' if n == 1 else n}.npy")).exists():
        n += 1
    write_bytes(dst, path.read_bytes())
    copies = [str(dst)]
    if cams_file(path).exists():
        write_bytes(cams_file(dst), cams_file(path).read_bytes())
        copies.append(str(cams_file(dst)))
    log.info("kept the replaced %s as %s", path, dst)
    return copies


def _log_rig(out: Path, rig: RigPoses, hw_disk: tuple[int, int]) -> None:
    h, w, f = rig.hwf
    (n0, f0), (n1, f1) = rig.bounds.min(0), rig.bounds.max(0)
    log.info("%s: cameras %s, H x W = %d x %d, focal %.2f px, near %.4g..%.4g, far %.4g..%.4g",
             out, ",".join(rig.names), h, w, f, n0, n1, f0, f1)
    if (h, w) != hw_disk:
        log.warning("%s: H x W = %d x %d are the model's camera size; the images on disk are %d x %d "
                    "(loaders rescale focal by their image width / W)", out, h, w, *hw_disk)


def cli() -> None:
    """Console entry point (see pyproject.toml)."""
    run_main(main)


if __name__ == "__main__":
    cli()

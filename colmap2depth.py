"""Stage: COLMAP model + ``poses_bounds.npy`` -> ``colmap_depth.npz`` sparse depth table.

With ``--triangulate 1`` the model is first built in the dataset's own world: one frame per camera is
matched and triangulated with the poses of ``poses_bounds.npy`` held fixed (no SfM; the shipped poses,
e.g. N3DV's, stay as they are), written to ``DATADIR/sparse/0`` (or ``--sparse_dir``).

``colmap_depth.npz`` (read it with ``dataLoader.depth_files.load_sparse_depth``), M keypoints:
- ``cam_index [M] int32``: row of ``poses_bounds.npy`` (= index into ``cam_names``);
- ``x, y [M] float32``: continuous pixel coords in the poses file's H x W, origin at the
  image's top-left corner (pixel centres at +0.5), x = column; the observed keypoint
  re-expressed in the poses file's pinhole (H, W, focal, centred principal point), so
  ``dataLoader.rays.pixel_directions(H, W, focal, xy)`` is the observed ray;
- ``depth [M] float32``: camera-axis z of the 3D point, in the world units of
  ``poses_bounds.npy`` (the COLMAP world), inside the camera's [near, far];
- ``weight [M] float32`` = 2·exp(-(e/ē)²), ``reproj_error [M] float32`` = e (px),
  ē the mean over all the model's points (DS-NeRF);
- ``cam_names [K] str``, ``hw [2] int32`` (H, W), ``focal`` (scalar, px).
At another resolution H' x W' multiply x, y and focal by W'/W. Keypoints come from one
instant (the frame SfM ran on): moving content is the consumer's to mask.
Beside the table, one preview PNG per camera (``colmap_depth_<cam>.png``): its keypoints coloured
by depth (world-unit colour bar) over the camera's first image.

Cameras are matched to rows by name: ``poses_bounds_cams.txt`` (written by
imgs2poses.py) or, without it, the scene's camera listing (frames/camXX or
images/) when it has as many cameras as rows. The model image of camera ``c`` is
``<prefix>c.<ext>`` (``--image_prefix static/`` for a static capture registered
with imgs2poses.py --static_dir). The poses file must hold the model's own poses
(same world); otherwise the script refuses, naming the cameras.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from core.errors import UserError
from dataLoader import colmap
from dataLoader.colmap_fixed import triangulate_known_poses
from dataLoader.colmap_points import keypoint_depth_table
from dataLoader.depth_files import save_depth_table
from dataLoader.poses import cams_file, load_poses_bounds
from dataLoader.scene_files import load_scene_files
from dataLoader.scene_layout import SceneDir
from engine.cli import refuse_existing, run_main
from engine.depth_previews import preview_pattern, save_keypoint_previews
from engine.stage_args import add_datadir, datadir_of, parse_with_config


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", help="scene config: its datadir, data_root and exclude_cams are used")
    add_datadir(p, help="scene folder with poses_bounds.npy")
    p.add_argument("--triangulate", type=int, default=0, choices=(0, 1),
                   help="1: build the model from the poses file (fixed poses) before reading it")
    p.add_argument("--frame_idx", type=int, default=0, help="--triangulate: which frame of each camera to match")
    p.add_argument("--exclude_cams", nargs="*", default=[], help="--triangulate: cameras left out (as in training)")
    p.add_argument("--seed", type=int, default=0, help="--triangulate: RANSAC seed")
    p.add_argument("--overwrite", type=int, default=0, choices=(0, 1),
                   help="1: replace an existing output file (and, with --triangulate, the model folder)")
    p.add_argument("--sparse_dir", default="", help="COLMAP model (default DATADIR/sparse/0)")
    p.add_argument("--poses_file", default="", help="LLFF poses (default DATADIR/poses_bounds.npy)")
    p.add_argument("--image_prefix", default="", help="model image-name prefix of these cameras (static/)")
    p.add_argument("--out", default="", help="output file (default DATADIR/colmap_depth.npz)")
    return p


def _camera_names(datadir: Path, poses: Path, n_rows: int, names) -> list[str]:
    if names is not None:
        return list(names)
    try:
        listed = [cam for cam, _ in colmap.list_capture_images(datadir)]
    except UserError:
        listed = []
    if len(listed) != n_rows:
        raise UserError(f"{cams_file(poses)}: missing, and the camera names of the {n_rows} rows of "
                        f"{poses.name} cannot be established from {datadir} ({len(listed)} cameras found)")
    return listed


def _triangulate(args, datadir: Path, poses: Path, sparse: Path):
    """Fixed-pose model of the selected cameras written to ``sparse``; -> their rig (names set)."""
    if poses != SceneDir(datadir).poses:
        raise UserError(f"--triangulate uses {SceneDir(datadir).poses}; drop --poses_file {poses}")
    if sparse.exists() and not args.overwrite:
        raise UserError(f"{sparse}: a model exists; pass --overwrite 1 to replace it with the fixed-pose one")
    with tempfile.TemporaryDirectory(prefix="colmap2depth_") as work:
        rec = triangulate_known_poses(datadir, Path(work), args.frame_idx, tuple(args.exclude_cams), args.seed)
    colmap.write_model(rec, sparse)
    return load_scene_files(datadir, exclude=tuple(args.exclude_cams)).rig


def main(argv: list[str] | None = None) -> None:
    args = parse_with_config(build_parser(), argv, ("datadir", "data_root", "exclude_cams"))
    datadir = Path(datadir_of(args))
    scene = SceneDir(datadir)
    poses = Path(args.poses_file or scene.poses)
    sparse = Path(args.sparse_dir or scene.sparse_model)
    out = Path(args.out or scene.sparse_depth)
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; give the output file name (e.g. {SceneDir(out).sparse_depth})")
    refuse_existing([out], args.overwrite)
    if args.triangulate:
        rig = _triangulate(args, datadir, poses, sparse)
        names = list(rig.names)
    else:
        rig = load_poses_bounds(poses)
        names = _camera_names(datadir, poses, len(rig), rig.names)
    rec, ids = colmap.read_model_in_world(sparse, rig.c2w, float(rig.bounds[:, 0].min()), names,
                                          args.image_prefix, source=f"{poses} vs {sparse}")
    table = keypoint_depth_table(rec, ids, names, rig.hwf, rig.bounds)
    table["c2w"] = rig.c2w
    if len(table["depth"]) == 0:
        raise UserError(f"{sparse}: no 3D point lies inside the [near, far] bounds of {poses}")
    save_depth_table(out, table)
    save_keypoint_previews(out, table, names, (int(rig.hwf[0]), int(rig.hwf[1])), datadir)
    counts = np.bincount(table["cam_index"], minlength=len(names))
    per_cam = ", ".join(f"{n}: {c}" for n, c in zip(names, counts, strict=True))
    print(f"colmap2depth: wrote {out} ({len(table['depth'])} keypoints; {per_cam}); previews {preview_pattern(out)}")


def cli() -> None:
    """Console entry point (see pyproject.toml)."""
    run_main(main)


if __name__ == "__main__":
    cli()

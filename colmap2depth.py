"""Stage: COLMAP model + ``poses_bounds.npy`` -> ``colmap_depth.npz`` sparse depth table (SPEC §5.2).

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

Cameras are matched to rows by name: ``poses_bounds_cams.txt`` (written by
imgs2poses.py) or, without it, the scene's camera listing (frames/camXX or
images/) when it has as many cameras as rows. The model image of camera ``c`` is
``<prefix>c.<ext>`` (``--image_prefix static/`` for a static capture registered
with imgs2poses.py --static_dir). The poses file must hold the model's own poses
(same world); otherwise the script refuses, naming the cameras.
"""
from __future__ import annotations

from pathlib import Path

import configargparse
import numpy as np

from core.errors import UserError
from dataLoader import colmap
from dataLoader.colmap_points import keypoint_depth_table
from dataLoader.depth_files import save_depth_table
from dataLoader.poses import cams_file, load_poses_bounds
from dataLoader.scene_layout import SceneDir
from engine.cli import refuse_existing, run_main


def build_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", is_config_file=True, help="config file (key = value)")
    p.add_argument("datadir", help="scene folder with poses_bounds.npy")
    p.add_argument("--sparse_dir", default="", help="COLMAP model (default DATADIR/sparse/0)")
    p.add_argument("--poses_file", default="", help="LLFF poses (default DATADIR/poses_bounds.npy)")
    p.add_argument("--image_prefix", default="", help="model image-name prefix of these cameras (static/)")
    p.add_argument("--out", default="", help="output file (default DATADIR/colmap_depth.npz)")
    p.add_argument("--overwrite", type=int, default=0, choices=(0, 1), help="1: replace an existing output file")
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


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    datadir = Path(args.datadir)
    scene = SceneDir(datadir)
    poses = Path(args.poses_file or scene.poses)
    sparse = Path(args.sparse_dir or scene.sparse_model)
    out = Path(args.out or scene.sparse_depth)
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; give the output file name (e.g. {SceneDir(out).sparse_depth})")
    refuse_existing([out], args.overwrite)
    rig = load_poses_bounds(poses)
    names = _camera_names(datadir, poses, len(rig), rig.names)
    rec, ids = colmap.read_model_in_world(sparse, rig.c2w, float(rig.bounds[:, 0].min()), names,
                                          args.image_prefix, source=f"{poses} vs {sparse}")
    table = keypoint_depth_table(rec, ids, names, rig.hwf, rig.bounds)
    table["c2w"] = rig.c2w
    if len(table["depth"]) == 0:
        raise UserError(f"{sparse}: no 3D point lies inside the [near, far] bounds of {poses}")
    save_depth_table(out, table)
    counts = np.bincount(table["cam_index"], minlength=len(names))
    per_cam = ", ".join(f"{n}: {c}" for n, c in zip(names, counts, strict=True))
    print(f"colmap2depth: wrote {out} ({len(table['depth'])} keypoints; {per_cam})")


if __name__ == "__main__":
    run_main(main)

"""Stage: write the embedded synthetic scene (multi-camera video with ground-truth depth).

Output (see :func:`synthetic.scene.write_scene`): ``frames/camXX/NNNN.png``,
``videos/camXX.mp4``, ``poses_bounds.npy`` (+ ``_cams.txt``), ``gt_depth/camXX.npy``
(float32 [T, H, W] camera-axis z, world units), ``meta.json`` and ``static/`` (the
world at t = 0 with the moving objects removed, from ``--n_static_views`` positions).
``--rig ellipse --texture brick`` builds the N3DV-like rig of issue 14. ``--texture detailed`` adds
non-repeating multi-scale albedo detail to every surface (same
geometry) so that ``imgs2poses.py`` (COLMAP SfM) registers the cameras.
"""
from __future__ import annotations

import time

import configargparse

from engine.cli import run_main
from engine.stage_args import add_datadir, datadir_of
from synthetic.scene import RIGS, TEXTURES, write_scene


def build_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", is_config_file=True, help="optional key = value config file")
    add_datadir(p, help="scene directory to create")
    p.add_argument("--rig", default="forward", choices=sorted(RIGS), help="camera rig layout")
    p.add_argument("--n_cams", type=int, default=7, help="video cameras (cam00 = rig centre, test camera)")
    p.add_argument("--n_frames", type=int, default=20, help="frames per video")
    p.add_argument("--width", type=int, default=96, help="image width in pixels")
    p.add_argument("--height", type=int, default=72, help="image height in pixels")
    p.add_argument("--fov", type=float, default=55.0, help="horizontal field of view in degrees")
    p.add_argument("--seed", type=int, default=0, help="scene seed (object jitter, textures, static views)")
    p.add_argument("--texture", default="smooth", choices=TEXTURES,
                   help="smooth: the default look; detailed: adds multi-scale albedo detail so SIFT/COLMAP SfM works")
    p.add_argument("--motion_scale", type=float, default=1.0, help="multiply the movers' path amplitudes")
    p.add_argument("--rig_spread", type=float, default=0.6, help="forward rig half-width in world units")
    p.add_argument("--n_static_views", type=int, default=16, help="static-capture views (0: none)")
    p.add_argument("--supersample", type=int, default=3, help="rays per pixel along each axis")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate of the mp4s")
    p.add_argument("--no_video", action="store_true", help="skip writing videos/*.mp4")
    p.add_argument("--overwrite", type=int, default=0, choices=(0, 1), help="replace an existing out_dir")
    return p


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    a.out_dir = datadir_of(a)
    start = time.perf_counter()
    meta = write_scene(a.out_dir, seed=a.seed, n_cams=a.n_cams, n_frames=a.n_frames, width=a.width,
                       height=a.height, rig=a.rig, rig_spread=a.rig_spread, n_static_views=a.n_static_views,
                       supersample=a.supersample, video=not a.no_video, fov_deg=a.fov, fps=a.fps,
                       overwrite=bool(a.overwrite), texture=a.texture,
                       motion_scale=a.motion_scale)
    print(f"wrote {a.rig} scene (seed {a.seed}, {a.texture} texture): {meta['n_cams']} cameras x "
          f"{meta['n_frames']} frames {meta['width']}x{meta['height']}, {meta['static']['n_views']} static views, "
          f"gt depth, to {a.out_dir} in {time.perf_counter() - start:.1f} s")


def cli() -> None:
    """Console entry point (see pyproject.toml)."""
    run_main(main)


if __name__ == "__main__":
    cli()

"""The embedded synthetic scene: deterministic numpy ray casting with ground-truth depth.

World units throughout; cameras use the toolkit's OpenGL axes [right, up,
backwards] (:mod:`dataLoader.rays`), one shared pinhole (principal point at the
image centre). The scene content -- analytic :class:`Shape` s (planes, spheres,
axis-aligned boxes) with procedural textures (``smooth`` by default, ``detailed``
for SfM), motions and camera rigs -- lives in :mod:`synthetic.content`
and is re-exported here. Shading is Lambertian under one directional light plus
ambient, no shadows. Moving shapes translate along smooth paths and may change
colour; time is the frame index ``t`` in ``0 .. n_frames - 1``. The static
capture (:func:`static_cameras`) sees the same world at t = 0 with the moving
shapes *removed*, from wider-spread positions.

Rendering: ``supersample`` x ``supersample`` rays per pixel, colours averaged;
depth is the camera-axis z (world units, positive) of the pixel-centre ray.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.errors import UserError
from dataLoader.atomic_io import atomic_dir, save_npy, write_png, write_text, write_video
from dataLoader.poses import look_at, save_poses_bounds
from dataLoader.rays import pixel_directions
from dataLoader.scene_layout import SceneDir
from dataLoader.video_io import to_uint8
from synthetic.content import (
    RIGS,
    TEXTURES,
    Motion,
    Scene,
    Shape,
    Texture,
    focal_from_fov,
    make_scene,
    static_cameras,
    video_cameras,
)

__all__ = ["RIGS", "TEXTURES", "Motion", "RayHits", "Scene", "Shape", "Texture", "camera_ray_dirs", "cast_rays",
           "depth_bounds", "focal_from_fov", "look_at", "make_scene", "render_frames", "render_view",
           "static_cameras", "video_cameras", "write_scene"]

EPS = 1e-6
MAX_RAYS_PER_CHUNK = 1 << 18


# ---------------------------------------------------------------- intersection
def _hit_plane(o, d, c, n):
    """Front-facing plane. o, d: [N, 3] -> t [N] (inf = miss), normals [N, 3]."""
    n = np.asarray(n, dtype=np.float64)
    denom = d @ n
    with np.errstate(divide="ignore", invalid="ignore"):
        t = ((np.asarray(c) - o) @ n) / denom
    t = np.where((denom < -EPS) & (t > EPS), t, np.inf)
    return t, np.broadcast_to(n, o.shape)


def _hit_sphere(o, d, c, size):
    """Sphere seen from outside: first intersection."""
    oc = o - c
    a = np.einsum("ij,ij->i", d, d)
    b = np.einsum("ij,ij->i", oc, d)
    disc = b * b - a * (np.einsum("ij,ij->i", oc, oc) - size[0] ** 2)
    t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    t = np.where((disc >= 0) & (t > EPS), t, np.inf)
    p = o + np.where(np.isfinite(t), t, 0.0)[:, None] * d
    return t, (p - c) / size[0]


def _hit_box(o, d, c, half):
    """Axis-aligned box seen from outside (slab method)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t1 = (c - np.asarray(half) - o) * inv
        t2 = (c + np.asarray(half) - o) * inv
    lo = np.nan_to_num(np.minimum(t1, t2), nan=-np.inf)
    hi = np.nan_to_num(np.maximum(t1, t2), nan=np.inf)
    t_in, t_out = lo.max(axis=1), hi.min(axis=1)
    t = np.where((t_out >= t_in) & (t_in > EPS), t_in, np.inf)
    axis = lo.argmax(axis=1)
    normals = np.zeros_like(o)
    normals[np.arange(len(o)), axis] = -np.sign(d[np.arange(len(o)), axis])
    return t, normals


INTERSECT = {"plane": _hit_plane, "sphere": _hit_sphere, "box": _hit_box}


@dataclass(frozen=True)
class RayHits:
    """Result of :func:`cast_rays`: t [N] ray parameter (inf = miss), shape_id [N] (-1 = miss), rgb [N, 3]."""

    t: np.ndarray
    shape_id: np.ndarray
    rgb: np.ndarray


def _shade(scene: Scene, shape: Shape, c, p, normals, s: float) -> np.ndarray:
    """Lambertian colour [M, 3] of points p [M, 3] with unit normals [M, 3] on ``shape`` at time s."""
    albedo = shape.texture(p - c)
    if shape.motion is not None:
        albedo = albedo * shape.motion.tint_rgb(s)
    light = np.asarray(scene.light_dir) / np.linalg.norm(scene.light_dir)
    lambert = np.clip(normals @ light, 0.0, None)
    return np.clip(albedo * (scene.ambient + (1 - scene.ambient) * lambert)[:, None], 0.0, 1.0)


def _trace(scene: Scene, ids, o: np.ndarray, d: np.ndarray, s: float) -> RayHits:
    """Nearest hit among ``scene.shapes[i] for i in ids``; o, d: [N, 3]."""
    best_t, best_id, best_n = np.full(len(o), np.inf), np.full(len(o), -1), np.zeros_like(o)
    centres = {k: scene.shapes[k].centre_at(s) for k in ids}
    for k in ids:
        t, n = INTERSECT[scene.shapes[k].kind](o, d, centres[k], scene.shapes[k].size)
        closer = t < best_t
        best_t, best_id = np.where(closer, t, best_t), np.where(closer, k, best_id)
        best_n[closer] = n[closer]
    rgb = np.zeros_like(o)
    for k in ids:
        sel = best_id == k
        if np.any(sel):
            p = o[sel] + best_t[sel, None] * d[sel]
            rgb[sel] = _shade(scene, scene.shapes[k], centres[k], p, best_n[sel], s)
    return RayHits(best_t, best_id, rgb)


def _trace_chunked(scene: Scene, ids, o: np.ndarray, d: np.ndarray, s: float) -> RayHits:
    n = MAX_RAYS_PER_CHUNK
    parts = [_trace(scene, ids, o[i:i + n], d[i:i + n], s) for i in range(0, len(o), n)]
    return RayHits(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("t", "shape_id", "rgb")))


def _merge(a: RayHits, b: RayHits) -> RayHits:
    closer = b.t < a.t
    return RayHits(np.where(closer, b.t, a.t), np.where(closer, b.shape_id, a.shape_id),
                   np.where(closer[:, None], b.rgb, a.rgb))


def cast_rays(scene: Scene, origins: np.ndarray, dirs: np.ndarray, t_index: int) -> RayHits:
    """Trace world rays (origins, dirs: [N, 3], dirs unnormalized) at frame ``t_index``.

    The returned ``t`` is in units of ``dirs``: with camera-z = -1 directions it is camera-axis depth.
    """
    return _trace_chunked(scene, range(len(scene.shapes)), origins, dirs, scene.time(t_index))


def _subpixel_xy(h: int, w: int, ss: int) -> np.ndarray:
    """[H * W * ss * ss, 2] continuous (x, y) pixel coordinates, ordered (row, col, sub-row, sub-col)."""
    off = (np.arange(ss) + 0.5) / ss
    y = np.arange(h)[:, None, None, None] + off[None, None, :, None]
    x = np.arange(w)[None, :, None, None] + off[None, None, None, :]
    y, x = np.broadcast_arrays(y, x)
    return np.stack([x.reshape(-1), y.reshape(-1)], axis=-1)


def camera_ray_dirs(c2w: np.ndarray, hwf, xy: np.ndarray) -> np.ndarray:
    """World directions (camera-z = -1) through pixel coordinates xy [N, 2] -> [N, 3]."""
    import torch  # the one pixel convention lives in dataLoader.rays

    h, w, f = hwf
    dirs_cam = pixel_directions(int(h), int(w), float(f), torch.from_numpy(np.asarray(xy, np.float64)))
    return dirs_cam.numpy() @ np.asarray(c2w, np.float64)[:, :3].T


def render_frames(scene: Scene, c2w: np.ndarray, hwf, t_indices, supersample: int = 3):
    """Render one camera at several frames; yields (rgb, depth) as :func:`render_view` returns them.

    Static shapes are traced once per camera, moving shapes once per frame.
    """
    h, w, ss = int(hwf[0]), int(hwf[1]), int(supersample)
    xy = _subpixel_xy(h, w, ss)
    if ss % 2 == 0:  # the pixel-centre ray (for depth) is not among the sub-samples: append it
        xy = np.concatenate([xy, _subpixel_xy(h, w, 1)])
    dirs = camera_ray_dirs(c2w, hwf, xy)
    origins = np.broadcast_to(np.asarray(c2w, np.float64)[:, 3], dirs.shape)
    moving = [k for k, shape in enumerate(scene.shapes) if shape.motion is not None]
    still = [k for k, shape in enumerate(scene.shapes) if shape.motion is None]
    static_hits = _trace_chunked(scene, still, origins, dirs, 0.0)
    n_sub = h * w * ss * ss
    for t_index in t_indices:
        hits = static_hits
        if moving:
            hits = _merge(static_hits, _trace_chunked(scene, moving, origins, dirs, scene.time(t_index)))
        rgb = hits.rgb[:n_sub].reshape(h, w, ss * ss, 3).mean(axis=2)
        depth = hits.t[n_sub:] if ss % 2 == 0 else hits.t[:n_sub].reshape(h, w, ss * ss)[:, :, ss * ss // 2]
        yield rgb.astype(np.float32), depth.reshape(h, w).astype(np.float32)


def render_view(scene: Scene, c2w: np.ndarray, hwf, t_index: int = 0,
                supersample: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Render one camera at frame ``t_index``.

    c2w: [3, 4] OpenGL camera-to-world; hwf: (H, W, focal). Returns rgb float32 [H, W, 3] in
    [0, 1] (mean of supersample^2 rays per pixel) and depth float32 [H, W]: camera-axis z
    (world units) of the pixel-centre ray, inf where nothing is hit.
    """
    return next(render_frames(scene, c2w, hwf, [t_index], supersample))


# ----------------------------------------------------------------------- writing
def depth_bounds(depth: np.ndarray, lo_pct: float = 1.0, hi_pct: float = 99.0) -> tuple[float, float]:
    """Near/far for one camera from its GT depth [T, H, W]: percentiles padded by 0.9 / 1.1."""
    valid = depth[np.isfinite(depth) & (depth > 0)]
    return 0.9 * float(np.percentile(valid, lo_pct)), 1.1 * float(np.percentile(valid, hi_pct))


def _render_camera(scene, c2w, hwf, n_frames, supersample, cam_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Render frames 0..n_frames-1, write cam_dir/NNNN.png; returns uint8 [T,H,W,3], depth [T,H,W]."""
    frames, depths = [], []
    for t, (rgb, depth) in enumerate(render_frames(scene, c2w, hwf, range(n_frames), supersample)):
        if not np.all(np.isfinite(depth)):
            raise RuntimeError(f"{cam_dir.name}: rays escaped the scene (the backdrop must be closed)")
        frames.append(to_uint8(rgb))
        depths.append(depth)
        write_png(cam_dir / f"{t:04d}.png", frames[-1])
    return np.stack(frames), np.stack(depths)


def _write_capture(root: Path, scene, cams, hwf, n_frames, supersample, desc, fps=None) -> list[str]:
    """frames/, gt_depth/, poses_bounds.npy (+ videos/ when fps) of one capture under ``root``."""
    names = [f"cam{k:02d}" for k in range(len(cams))]
    layout = SceneDir(root)
    bounds = []
    for name, c2w in zip(tqdm(names, desc=desc, unit="cam", leave=False), cams):
        frames, depth = _render_camera(scene, c2w, hwf, n_frames, supersample, layout.frames / name)
        save_npy(layout.gt_depth(name), depth.astype(np.float32))
        bounds.append(depth_bounds(depth))
        if fps is not None:
            write_video(layout.videos / f"{name}.mp4", frames, fps=fps)
    save_poses_bounds(layout.poses, cams, hwf, np.asarray(bounds), names)
    return names


def _shape_meta(shape: Shape) -> dict:
    d = asdict(shape)
    d["moving"] = shape.motion is not None
    return d


def write_scene(out_dir: str | Path, seed: int = 0, n_cams: int = 7, n_frames: int = 20, width: int = 96,
                height: int = 72, rig: str = "forward", rig_spread: float = 0.6, n_static_views: int = 16,
                supersample: int = 3, video: bool = True, fov_deg: float = 55.0, fps: float = 30.0,
                overwrite: bool = False, texture: str = "smooth", motion_scale: float = 1.0) -> dict:
    """Render and write a complete scene directory (SPEC §3 layout, plus ``static/`` and ``meta.json``).

    Written into a temp sibling folder and renamed into place. Returns the meta dict.
    ``static/`` holds the world at t = 0 with the moving shapes removed, one image per view.
    ``texture``: ``smooth`` (default) or ``detailed`` (albedo detail for SfM; same geometry).
    """
    out_dir = Path(out_dir)
    if n_cams < 1 or n_frames < 1 or n_static_views < 0 or min(width, height, supersample) < 1:
        raise UserError(f"{out_dir}: n_cams, n_frames, sizes and supersample must be positive")
    if rig not in RIGS:
        raise UserError(f"unknown rig {rig!r}; choose from {sorted(RIGS)}")
    if texture not in TEXTURES:
        raise UserError(f"unknown texture {texture!r}; choose from {list(TEXTURES)}")
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a folder")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise UserError(f"{out_dir}: exists and is not empty; pass --overwrite 1 to replace it")
    scene = make_scene(seed, n_frames, rig, texture, motion_scale)
    hwf = (height, width, focal_from_fov(width, fov_deg))
    with atomic_dir(out_dir, overwrite=True) as tmp:
        names = _write_capture(tmp, scene, video_cameras(scene, n_cams, rig_spread), hwf, n_frames,
                               supersample, "video rig", fps if video else None)
        static_names = []
        if n_static_views:
            SceneDir(tmp).static.root.mkdir()
            static_names = _write_capture(SceneDir(tmp).static.root, scene.without_moving(),
                                          static_cameras(scene, n_static_views, rig_spread), hwf, 1,
                                          supersample, "static views")
        meta = {
            "generator": __name__, "seed": seed, "rig": rig, "rig_spread": rig_spread, "texture": texture,
            "motion_scale": motion_scale,
            "n_cams": n_cams, "n_frames": n_frames, "width": width, "height": height,
            "focal": hwf[2], "fov_deg": fov_deg, "supersample": supersample, "fps": fps,
            "cam_names": names, "test_cam": names[0], "videos": bool(video),
            "depth": "gt_depth/camXX.npy float32 [T, H, W]: camera-axis z in world units",
            "cameras": "poses_bounds.npy (LLFF); OpenGL [right, up, backwards] after load; cam00 = test",
            "bounds": "per camera 0.9 x 1st / 1.1 x 99th percentile of its gt depth",
            "light_dir": list(scene.light_dir), "ambient": scene.ambient, "focus": list(scene.focus),
            "shapes": [_shape_meta(s) for s in scene.shapes],
            "static": {"n_views": n_static_views, "cam_names": static_names, "time_index": 0,
                       "moving_objects": "removed"},
        }
        write_text(SceneDir(tmp).meta, json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return meta

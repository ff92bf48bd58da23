"""The embedded synthetic scene: deterministic numpy ray casting with ground-truth depth.

World units throughout; cameras use the toolkit's OpenGL axes [right, up,
backwards] (:mod:`dataLoader.rays`), one shared pinhole (principal point at the
image centre). A scene is a tuple of analytic :class:`Shape` s (planes, spheres,
axis-aligned boxes) with procedural, moderately smooth textures (a few
sinusoids plus a soft checker), Lambertian shading under one directional light
plus ambient, no shadows. Moving shapes translate along smooth paths and may
change colour; time is the frame index ``t`` in ``0 .. n_frames - 1``.

Rigs (``RIGS``): ``forward`` -- an N3DV-like planar rig (cam00 at the centre, the
others on rings of radius ``spread``) looking along world -z, toed in toward a
point ~6 units ahead, content 2.5..12 units away, backdrop wall at z = -11;
``inward`` -- cameras on a 120 degree arc around objects at the origin, inside a
closed room. The static capture (:func:`static_cameras`) sees the same world at
t = 0 with the moving shapes *removed*, from wider-spread positions.

Rendering: ``supersample`` x ``supersample`` rays per pixel, colours averaged;
depth is the camera-axis z (world units, positive) of the pixel-centre ray.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dataLoader.errors import UserError
from dataLoader.poses import save_poses_bounds
from dataLoader.rays import pixel_directions
from dataLoader.video_io import to_uint8, write_png, write_video

EPS = 1e-6
MAX_RAYS_PER_CHUNK = 1 << 18


@dataclass(frozen=True)
class Texture:
    """Albedo(p) = base + sum_k colour_k * sin(k_k . p + phase_k) + soft checker, clipped to [0.03, 0.97].

    waves: rows (kx, ky, kz, phase, r, g, b) -- wave vector in 1/world units and colour amplitude.
    checker: (cell size, amplitude, axis a, axis b): soft checker on two axes of p; cell 0 = none.
    """

    base: tuple[float, float, float]
    waves: tuple[tuple[float, ...], ...]
    checker: tuple[float, float, int, int] = (0.0, 0.0, 0, 1)

    def __call__(self, p: np.ndarray) -> np.ndarray:
        """p: [N, 3] shape-local points -> albedo [N, 3]."""
        w = np.asarray(self.waves, dtype=np.float64).reshape(-1, 7)
        col = np.asarray(self.base, dtype=np.float64) + np.sin(p @ w[:, :3].T + w[:, 3]) @ w[:, 4:]
        cell, amp, a, b = self.checker
        if cell > 0:
            soft = np.tanh(2.5 * np.sin(np.pi * p[:, a] / cell) * np.sin(np.pi * p[:, b] / cell))
            col = col + amp * soft[:, None]
        return np.clip(col, 0.03, 0.97)


@dataclass(frozen=True)
class Motion:
    """Offset(s) = amp * sin(2 pi (freq * s + phase)) per axis, s = t / (T - 1) in [0, 1].

    tint: colour-change amplitude; albedo is multiplied by 1 + tint * cos(2 pi s + [0, 2/3 pi, 4/3 pi]).
    """

    amp: tuple[float, float, float]
    freq: tuple[float, float, float]
    phase: tuple[float, float, float]
    tint: float = 0.0

    def offset(self, s: float) -> np.ndarray:
        """[3] translation at normalized time s."""
        return np.asarray(self.amp) * np.sin(2 * np.pi * (np.asarray(self.freq) * s + np.asarray(self.phase)))

    def tint_rgb(self, s: float) -> np.ndarray:
        """[3] multiplicative colour factor at normalized time s."""
        return 1.0 + self.tint * np.cos(2 * np.pi * s + np.array([0.0, 2.0, 4.0]) * np.pi / 3)


@dataclass(frozen=True)
class Shape:
    """One analytic surface.

    kind: "plane" (centre = a point on it, size = unit normal towards the cameras; seen from the
    front only), "sphere" (size = (r, r, r)) or "box" (axis-aligned, size = half extents).
    The texture is evaluated at p - centre(t), so it moves with the shape.
    """

    name: str
    kind: str
    centre: tuple[float, float, float]
    size: tuple[float, float, float]
    texture: Texture
    motion: Motion | None = None

    def centre_at(self, s: float) -> np.ndarray:
        c = np.asarray(self.centre, dtype=np.float64)
        return c if self.motion is None else c + self.motion.offset(s)


@dataclass(frozen=True)
class Scene:
    """Shapes + light. light_dir: unit vector towards the light. focus: the rig's toe-in point."""

    shapes: tuple[Shape, ...]
    n_frames: int
    seed: int
    rig: str
    focus: tuple[float, float, float]
    light_dir: tuple[float, float, float] = (-0.37, 0.79, 0.49)
    ambient: float = 0.35

    def time(self, t_index: int) -> float:
        """Frame index -> normalized time s in [0, 1]."""
        return 0.0 if self.n_frames <= 1 else float(t_index) / (self.n_frames - 1)

    def without_moving(self) -> Scene:
        """The static world: moving shapes removed (used for the static capture)."""
        return replace(self, shapes=tuple(s for s in self.shapes if s.motion is None))


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


# ---------------------------------------------------------------------- cameras
def look_at(centre, target, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """[3, 4] OpenGL c2w at ``centre`` looking at ``target`` (det +1)."""
    centre = np.asarray(centre, np.float64)
    back = centre - np.asarray(target, np.float64)
    back /= np.linalg.norm(back)
    right = np.cross(np.asarray(up, np.float64), back)
    right /= np.linalg.norm(right)
    return np.stack([right, np.cross(back, right), back, centre], axis=1)


def focal_from_fov(width: int, fov_deg: float) -> float:
    """Focal length in pixels for a horizontal field of view."""
    return 0.5 * width / np.tan(np.deg2rad(fov_deg) / 2)


def _ring_positions(n: int, spread: float) -> np.ndarray:
    """[n, 2] (x, y) rig positions: cam00 at the centre, the rest on rings out to radius ``spread``."""
    rest = n - 1
    n_rings = max(1, int(np.ceil(rest / 8)))
    weights = np.arange(1, n_rings + 1, dtype=np.float64)
    counts = np.floor(rest * weights / weights.sum()).astype(int)
    counts[-1] += rest - counts.sum()
    pts = [np.zeros((1, 2))]
    for j, count in enumerate(counts, start=1):
        ang = 2 * np.pi * np.arange(count) / max(count, 1) + 0.5 * (j - 1)
        pts.append(spread * j / n_rings * np.stack([np.cos(ang), np.sin(ang)], axis=1))
    return np.concatenate(pts)[:n]


def _forward_rig(scene: Scene, n_cams: int, spread: float) -> np.ndarray:
    xy = _ring_positions(n_cams, spread)
    return np.stack([look_at((x, y, 0.0), scene.focus) for x, y in xy])


def _forward_static_rig(scene: Scene, n_views: int, spread: float, rng) -> np.ndarray:
    cols = int(np.ceil(np.sqrt(n_views)))
    rows = int(np.ceil(n_views / cols))
    xs = np.linspace(-1.5 * spread, 1.5 * spread, cols)
    ys = np.linspace(-1.5 * spread, 1.5 * spread, rows) if rows > 1 else np.zeros(1)
    cams = []
    for k in range(n_views):
        centre = (xs[k % cols], ys[k // cols], rng.uniform(-0.3, 0.3) * spread)
        target = np.asarray(scene.focus) + rng.uniform((-0.8, -0.5, -2.0), (0.8, 0.5, 2.0))
        cams.append(look_at(centre, target))
    return np.stack(cams)


INWARD_RADIUS = 6.0


def _inward_rig(scene: Scene, n_cams: int, spread: float) -> np.ndarray:
    """cam00 in the middle of a 120 degree arc, the others alternating outwards (spread unused)."""
    m = max(1, int(np.ceil((n_cams - 1) / 2)))
    angles = [0.0] + [sign * 60.0 * k / m for k in range(1, m + 1) for sign in (1, -1)]
    target = np.asarray(scene.focus) + (0.0, -0.2, 0.0)
    return np.stack([look_at((INWARD_RADIUS * np.sin(a), 0.4, INWARD_RADIUS * np.cos(a)), target)
                     for a in np.deg2rad(angles[:n_cams])])


def _inward_static_rig(scene: Scene, n_views: int, spread: float, rng) -> np.ndarray:
    per_row = int(np.ceil(n_views / 2))
    cams = []
    for k in range(n_views):
        a = np.deg2rad(np.linspace(-80, 80, per_row)[k % per_row] if per_row > 1 else 0.0)
        r = INWARD_RADIUS + rng.uniform(-0.5, 0.5)
        target = np.asarray(scene.focus) + rng.uniform(-0.4, 0.4, 3)
        cams.append(look_at((r * np.sin(a), (0.4, 1.8)[k // per_row], r * np.cos(a)), target))
    return np.stack(cams)


# ----------------------------------------------------------------- scene content
def _texture(rng, period: float, contrast: float = 0.12, checker=(0.0, 0.0, 0, 1)) -> Texture:
    """Random smooth texture: 3 sinusoids with wavelengths ~ period (world units)."""
    base = tuple(float(v) for v in rng.uniform(0.25, 0.7, 3))
    waves = []
    for _ in range(3):
        v = rng.normal(size=3)
        k = 2 * np.pi / (period * rng.uniform(0.8, 1.6)) * v / np.linalg.norm(v)
        waves.append((*k, rng.uniform(0, 2 * np.pi), *rng.uniform(-contrast, contrast, 3)))
    return Texture(base, tuple(tuple(float(x) for x in w) for w in waves), checker)


def _box(name, rng, centre, half, period, motion=None) -> Shape:
    return Shape(name, "box", tuple(centre), (half,) * 3, _texture(rng, period), motion)


def _sphere(name, rng, centre, r, period, motion=None) -> Shape:
    return Shape(name, "sphere", tuple(centre), (r,) * 3, _texture(rng, period), motion)


def _plane(name, rng, point, normal, period, checker) -> Shape:
    return Shape(name, "plane", point, normal, _texture(rng, period, 0.08, checker))


def _forward_shapes(rng) -> tuple[Shape, ...]:
    def j(*xyz):
        return tuple(float(v) for v in np.asarray(xyz) + rng.uniform(-0.15, 0.15, 3))

    return (
        _plane("wall", rng, (0.0, 0.0, -11.0), (0.0, 0.0, 1.0), 2.6, (1.7, 0.12, 0, 1)),
        _plane("floor", rng, (0.0, -1.6, 0.0), (0.0, 1.0, 0.0), 2.0, (1.3, 0.12, 0, 2)),
        _sphere("sphere_left", rng, j(-2.1, -0.5, -7.5), 0.95, 1.3),
        _box("box_right", rng, (j(2.1, 0, 0)[0], -0.85, j(0, 0, -8.2)[2]), 0.75, 1.4),
        _sphere("sphere_back", rng, j(0.7, 1.3, -9.3), 0.8, 1.5),
        _box("box_near", rng, j(-1.35, -0.75, -3.8), 0.3, 0.7),
        _sphere("ball", rng, j(0.0, -0.2, -5.5), 0.55, 0.9,
                Motion((1.3, 0.3, 0.4), (0.5, 1.0, 0.5), (-0.25, 0.0, 0.0))),
        _box("cube", rng, j(1.0, 0.55, -4.6), 0.35, 0.8,
             Motion((0.45, 0.45, 0.7), (1.0, 0.5, 0.5), (0.0, -0.25, 0.0), tint=0.35)),
    )


def _inward_shapes(rng) -> tuple[Shape, ...]:
    def room(name, point, normal, checker):
        return _plane(name, rng, point, normal, 2.4, checker)

    return (
        room("wall_back", (0.0, 0.0, -7.0), (0.0, 0.0, 1.0), (1.6, 0.12, 0, 1)),
        room("wall_front", (0.0, 0.0, 7.0), (0.0, 0.0, -1.0), (1.6, 0.12, 0, 1)),
        room("wall_left", (-7.0, 0.0, 0.0), (1.0, 0.0, 0.0), (1.6, 0.12, 1, 2)),
        room("wall_right", (7.0, 0.0, 0.0), (-1.0, 0.0, 0.0), (1.6, 0.12, 1, 2)),
        room("floor", (0.0, -1.6, 0.0), (0.0, 1.0, 0.0), (1.3, 0.12, 0, 2)),
        room("ceiling", (0.0, 5.0, 0.0), (0.0, -1.0, 0.0), (2.0, 0.08, 0, 2)),
        _sphere("sphere_a", rng, (-2.2, -0.7, -1.6), 0.9, 1.0),
        _box("box_b", rng, (2.0, -0.9, -1.8), 0.7, 1.0),
        _sphere("sphere_c", rng, (0.3, 0.9, -2.8), 0.7, 1.0),
        _box("box_d", rng, (-2.3, -1.2, 1.2), 0.4, 0.7),
        _sphere("ball", rng, (0.0, 0.3, 0.0), 0.5, 0.8,
                Motion((1.3, 0.2, 1.3), (1.0, 2.0, 1.0), (0.0, 0.0, 0.25))),
        _box("cube", rng, (0.0, -0.4, 0.0), 0.35, 0.7,
             Motion((0.15, 0.5, 0.15), (1.0, 1.0, 1.0), (0.0, 0.0, 0.25), tint=0.35)),
    )


@dataclass(frozen=True)
class RigKind:
    """How one rig kind builds its shapes, video cameras and static-capture cameras."""

    shapes: object
    video: object
    static: object
    focus: tuple[float, float, float]


RIGS = {
    "forward": RigKind(_forward_shapes, _forward_rig, _forward_static_rig, (0.0, 0.0, -6.0)),
    "inward": RigKind(_inward_shapes, _inward_rig, _inward_static_rig, (0.0, 0.0, 0.0)),
}


def make_scene(seed: int = 0, n_frames: int = 20, rig: str = "forward") -> Scene:
    """Deterministic scene for ``seed``: object jitter, textures and colours come from the seed."""
    rng = np.random.default_rng([seed, 0])
    return Scene(RIGS[rig].shapes(rng), int(n_frames), int(seed), rig, RIGS[rig].focus)


def video_cameras(scene: Scene, n_cams: int, spread: float = 0.6) -> np.ndarray:
    """[K, 3, 4] OpenGL c2w of the video rig; row 0 (cam00) is the rig centre."""
    return RIGS[scene.rig].video(scene, n_cams, spread)


def static_cameras(scene: Scene, n_views: int, spread: float = 0.6) -> np.ndarray:
    """[V, 3, 4] c2w of the static capture: wider than the video rig, varying toe-in (seeded)."""
    return RIGS[scene.rig].static(scene, n_views, spread, np.random.default_rng([scene.seed, 1]))


# ----------------------------------------------------------------------- writing
def depth_bounds(depth: np.ndarray, lo_pct: float = 1.0, hi_pct: float = 99.0) -> tuple[float, float]:
    """Near/far for one camera from its GT depth [T, H, W]: percentiles padded by 0.9 / 1.1."""
    valid = depth[np.isfinite(depth) & (depth > 0)]
    return 0.9 * float(np.percentile(valid, lo_pct)), 1.1 * float(np.percentile(valid, hi_pct))


def _render_camera(scene, c2w, hwf, n_frames, supersample, cam_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Render frames 0..n_frames-1, write cam_dir/NNNN.png; returns uint8 [T,H,W,3], depth [T,H,W]."""
    cam_dir.mkdir(parents=True)
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
    bounds = []
    for name, c2w in zip(tqdm(names, desc=desc, unit="cam", leave=False), cams):
        frames, depth = _render_camera(scene, c2w, hwf, n_frames, supersample, root / "frames" / name)
        (root / "gt_depth").mkdir(exist_ok=True)
        np.save(root / "gt_depth" / f"{name}.npy", depth.astype(np.float32))
        bounds.append(depth_bounds(depth))
        if fps is not None:
            (root / "videos").mkdir(exist_ok=True)
            write_video(root / "videos" / f"{name}.mp4", frames, fps=fps)
    save_poses_bounds(root / "poses_bounds.npy", cams, hwf, np.asarray(bounds), names)
    return names


def _shape_meta(shape: Shape) -> dict:
    d = asdict(shape)
    d["moving"] = shape.motion is not None
    return d


def write_scene(out_dir: str | Path, seed: int = 0, n_cams: int = 7, n_frames: int = 20, width: int = 96,
                height: int = 72, rig: str = "forward", rig_spread: float = 0.6, n_static_views: int = 16,
                supersample: int = 3, video: bool = True, fov_deg: float = 55.0, fps: float = 30.0,
                overwrite: bool = False) -> dict:
    """Render and write a complete scene directory (SPEC §3 layout, plus ``static/`` and ``meta.json``).

    Written into a temp sibling folder and renamed into place. Returns the meta dict.
    ``static/`` holds the world at t = 0 with the moving shapes removed, one image per view.
    """
    out_dir = Path(out_dir)
    if n_cams < 1 or n_frames < 1 or n_static_views < 0 or min(width, height, supersample) < 1:
        raise UserError(f"{out_dir}: n_cams, n_frames, sizes and supersample must be positive")
    if rig not in RIGS:
        raise UserError(f"unknown rig {rig!r}; choose from {sorted(RIGS)}")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise UserError(f"{out_dir}: exists and is not empty; pass --overwrite 1 to replace it")
    scene = make_scene(seed, n_frames, rig)
    hwf = (height, width, focal_from_fov(width, fov_deg))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the scene dir should not be
    try:
        names = _write_capture(tmp, scene, video_cameras(scene, n_cams, rig_spread), hwf, n_frames,
                               supersample, "video rig", fps if video else None)
        static_names = []
        if n_static_views:
            (tmp / "static").mkdir()
            static_names = _write_capture(tmp / "static", scene.without_moving(),
                                          static_cameras(scene, n_static_views, rig_spread), hwf, 1,
                                          supersample, "static views")
        meta = {
            "generator": __name__, "seed": seed, "rig": rig, "rig_spread": rig_spread,
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
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.replace(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return meta

"""Content of the embedded synthetic scene: surfaces, textures, motions, camera rigs.

World units throughout; cameras are OpenGL c2w [right, up, backwards | centre]. A scene is a
tuple of analytic :class:`Shape` s (planes, spheres, axis-aligned boxes) with procedural
textures, lit by one directional light plus ambient (rendering: ``synthetic.scene``).

Textures (``TEXTURES``): ``smooth`` (the default; the demo's PSNR target depends on it) -- a
few sinusoids plus a soft checker per surface, too smooth for SIFT; ``detailed`` -- the same
scene with non-repeating multi-scale value noise added to every surface's albedo (cells from
~0.05 to ~0.8 world units, coloured, seeded per shape), so SIFT finds hundreds of features
per view and COLMAP SfM registers every camera (see ``bench/sfm_accuracy.py``).

Rigs (``RIGS``): ``ellipse`` -- the N3DV-like rig of issue 14 (cam00 at the centre, the others on an
ellipse of semi-axes spread x spread/2 with 3 cm jitter, toed in toward a point 5 units ahead; back
wall at 6.5, floor 1.1 below, three movers); ``forward`` -- an N3DV-like planar rig (cam00 at the centre, the others on
rings of radius ``spread``) looking along world -z, toed in toward a point ~6 units ahead,
content 2.5..12 units away, backdrop wall at z = -11; ``inward`` -- cameras on a 120 degree
arc around objects at the origin, inside a closed room. The static capture
(:func:`static_cameras`) sees the same world from wider-spread positions.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from dataLoader.poses import look_at

TEXTURES = ("smooth", "detailed", "brick")
# Detail octaves of the ``detailed`` texture: value-noise cell size (world units) and luminance amplitude.
DETAIL_OCTAVES = ((0.05, 0.10), (0.1, 0.14), (0.2, 0.16), (0.4, 0.16), (0.8, 0.12))


# ---------------------------------------------------------------- value noise
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer on uint64 arrays (multiplications wrap modulo 2^64)."""
    h = h ^ (h >> np.uint64(30))
    h = h * _MIX1
    h = h ^ (h >> np.uint64(27))
    h = h * _MIX2
    return h ^ (h >> np.uint64(31))


def _lattice_values(cells: np.ndarray, seed: int) -> np.ndarray:
    """Pseudo-random value in [-1, 1) for integer lattice points cells [N, 3] (int64); no period."""
    h = np.full(len(cells), (int(seed) * 0x9E3779B97F4A7C15) % 2 ** 64, dtype=np.uint64)
    for axis in range(3):
        h = _mix(h ^ cells[:, axis].astype(np.int64).view(np.uint64))
    return (h >> np.uint64(11)).astype(np.float64) * 2.0 ** -52 - 1.0


def value_noise(p: np.ndarray, cell: float, seed: int) -> np.ndarray:
    """Smooth 3D value noise [N] in [-1, 1] of points p [N, 3]: lattice spacing ``cell``, quintic fade."""
    q = np.asarray(p, np.float64) / cell
    base = np.floor(q)
    f = q - base
    u = f * f * f * (f * (6 * f - 15) + 10)
    base = base.astype(np.int64)
    out = np.zeros(len(q))
    for corner in np.ndindex(2, 2, 2):
        c = np.asarray(corner)
        w = np.prod(np.where(c == 1, u, 1 - u), axis=1)
        out += w * _lattice_values(base + c, seed)
    return out


# ---------------------------------------------------------------- shapes
@dataclass(frozen=True)
class Texture:
    """Albedo(p) = base + sum_k colour_k sin(k_k . p + phase_k) + soft checker + noise, clipped to [0.03, 0.97].

    waves: rows (kx, ky, kz, phase, r, g, b) -- wave vector in 1/world units and colour amplitude.
    checker: (cell size, amplitude, axis a, axis b): soft checker on two axes of p; cell 0 = none.
    noise: rows (cell, seed, r, g, b): :func:`value_noise` of p with that cell size and seed,
    times the colour amplitude, added to the albedo (the ``detailed`` texture's detail).
    brick: (width, height, mortar, amplitude, axis a, axis b, variation): running-bond bricks on two
    axes of p, mortar lines (``mortar`` wide) darkened by ``amplitude``, each brick's luminance offset
    by a pseudo-random value in +-``variation``; width 0 = none. A hard checker is a
    ``checker`` with a large amplitude (the ``brick`` texture sharpens the soft one).
    """

    base: tuple[float, float, float]
    waves: tuple[tuple[float, ...], ...]
    checker: tuple[float, float, int, int] = (0.0, 0.0, 0, 1)
    noise: tuple[tuple[float, ...], ...] = ()
    brick: tuple[float, float, float, float, int, int, float] = (0.0, 0.0, 0.0, 0.0, 0, 1, 0.0)

    def __call__(self, p: np.ndarray) -> np.ndarray:
        """p: [N, 3] shape-local points -> albedo [N, 3]."""
        w = np.asarray(self.waves, dtype=np.float64).reshape(-1, 7)
        col = np.asarray(self.base, dtype=np.float64) + np.sin(p @ w[:, :3].T + w[:, 3]) @ w[:, 4:]
        cell, amp, a, b = self.checker
        if cell > 0:
            soft = np.tanh(2.5 * np.sin(np.pi * p[:, a] / cell) * np.sin(np.pi * p[:, b] / cell))
            col = col + amp * soft[:, None]
        bw, bh, mortar, bamp, ba, bb, bvar = self.brick
        if bw > 0:
            row = np.floor(p[:, bb] / bh)
            shifted = p[:, ba] / bw + 0.5 * np.mod(row, 2)
            u = np.mod(shifted, 1.0) * bw
            v = np.mod(p[:, bb] / bh, 1.0) * bh
            joint = (np.minimum(u, bw - u) < mortar / 2) | (np.minimum(v, bh - v) < mortar / 2)
            cells = np.stack([np.floor(shifted), row, np.zeros_like(row)], 1).astype(np.int64)
            col = col + bvar * _lattice_values(cells, 7)[:, None] - bamp * joint[:, None]
        for cell, seed, *rgb in self.noise:
            col = col + value_noise(p, cell, int(seed))[:, None] * np.asarray(rgb)
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
    texture: str = "smooth"

    def time(self, t_index: int) -> float:
        """Frame index -> normalized time s in [0, 1]."""
        return 0.0 if self.n_frames <= 1 else float(t_index) / (self.n_frames - 1)

    def without_moving(self) -> Scene:
        """The static world: moving shapes removed (used for the static capture)."""
        return replace(self, shapes=tuple(s for s in self.shapes if s.motion is None))


# ---------------------------------------------------------------------- cameras
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


def _ellipse_rig(scene: Scene, n_cams: int, spread: float) -> np.ndarray:
    """cam00 at the centre, the others on an ellipse of semi-axes (spread, spread / 2) with 3 %-of-a-metre
    jitter (seeded), all looking at the focus point 5 units ahead (the N3DV-like rig of issue 14)."""
    rng = np.random.default_rng([scene.seed, 3])
    ang = 2 * np.pi * np.arange(n_cams - 1) / max(n_cams - 1, 1)
    xy = np.concatenate([np.zeros((1, 2)), np.stack([spread * np.cos(ang), 0.5 * spread * np.sin(ang)], 1)])
    xy[1:] += rng.uniform(-0.03, 0.03, (n_cams - 1, 2))
    z = np.concatenate([[0.0], rng.uniform(-0.03, 0.03, n_cams - 1)])
    return np.stack([look_at((x, y, zz), scene.focus) for (x, y), zz in zip(xy, z)])


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


def _ellipse_shapes(rng) -> tuple[Shape, ...]:
    """Back wall at 6.5, floor 1.1 below the rig, two still objects and three movers (1.7 .. 7.2 deep)."""
    def j(*xyz):
        return tuple(float(v) for v in np.asarray(xyz) + rng.uniform(-0.1, 0.1, 3))

    return (
        _plane("wall", rng, (0.0, 0.0, -6.5), (0.0, 0.0, 1.0), 2.0, (1.1, 0.12, 0, 1)),
        _plane("floor", rng, (0.0, -1.1, 0.0), (0.0, 1.0, 0.0), 1.6, (0.8, 0.12, 0, 2)),
        _box("box_left", rng, j(-1.5, -0.65, -4.6), 0.45, 0.9),
        _sphere("sphere_right", rng, j(1.6, -0.45, -5.3), 0.65, 1.1),
        _sphere("ball", rng, j(0.0, -0.35, -3.6), 0.5, 0.8,
                Motion((0.9, 0.2, 0.3), (0.5, 1.0, 0.5), (-0.25, 0.0, 0.0))),
        _box("cube", rng, j(0.95, 0.45, -2.9), 0.32, 0.7,
             Motion((0.35, 0.3, 0.4), (1.0, 0.5, 0.5), (0.0, -0.25, 0.0), tint=0.3)),
        _sphere("bob", rng, j(-0.85, 0.35, -2.3), 0.32, 0.6,
                Motion((0.3, 0.35, 0.25), (0.5, 1.0, 1.0), (0.1, 0.0, 0.3))),
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
    "ellipse": RigKind(_ellipse_shapes, _ellipse_rig, _forward_static_rig, (0.0, 0.0, -5.0)),
}


def _detail(rng) -> tuple[tuple[float, ...], ...]:
    """Noise rows (see :class:`Texture`) for one surface: every octave of ``DETAIL_OCTAVES``, its own
    seed, a mostly-luminance colour amplitude (SIFT sees grey levels) with some hue variation."""
    rows = []
    for cell, amp in DETAIL_OCTAVES:
        rgb = amp * (1.0 + 0.35 * rng.uniform(-1, 1, 3))
        rows.append((cell, float(rng.integers(1, 2 ** 31)), *(float(v) for v in rgb)))
    return tuple(rows)


def with_detail(scene: Scene) -> Scene:
    """The same scene with multi-scale value-noise detail on every surface (``texture="detailed"``)."""
    rng = np.random.default_rng([scene.seed, 2])
    shapes = tuple(replace(s, texture=replace(s.texture, noise=_detail(rng))) for s in scene.shapes)
    return replace(scene, shapes=shapes, texture="detailed")


def with_bricks(scene: Scene) -> Scene:
    """``detailed`` plus running-bond bricks on planes parallel to the wall and a sharp floor checker."""
    shapes = []
    for s in with_detail(scene).shapes:
        tex = s.texture
        if s.kind == "plane" and s.size[2] > 0.5:  # facing the cameras: a brick wall
            tex = replace(tex, brick=(0.4, 0.18, 0.06, 0.4, 0, 1, 0.25))
        elif s.kind == "plane":
            tex = replace(tex, checker=(0.5, 0.35, tex.checker[2], tex.checker[3]))
        shapes.append(replace(s, texture=tex))
    return replace(scene, shapes=tuple(shapes), texture="brick")


def scale_motion(scene: Scene, factor: float) -> Scene:
    """The same scene with every moving shape's path amplitude multiplied by ``factor``."""
    shapes = tuple(s if s.motion is None else
                   replace(s, motion=replace(s.motion, amp=tuple(float(a) * factor for a in s.motion.amp)))
                   for s in scene.shapes)
    return replace(scene, shapes=shapes)


def make_scene(seed: int = 0, n_frames: int = 20, rig: str = "forward", texture: str = "smooth",
               motion_scale: float = 1.0) -> Scene:
    """Deterministic scene for ``seed``: object jitter, textures and colours come from the seed.

    texture: ``smooth``, ``detailed`` (same geometry and base colours plus albedo detail) or ``brick``
    (detailed plus brick walls and a sharp floor checker), see :data:`TEXTURES`; the smooth part is
    identical in all. motion_scale multiplies the movers' path amplitudes.
    """
    if texture not in TEXTURES:
        raise ValueError(f"unknown texture {texture!r}; choose from {TEXTURES}")
    rng = np.random.default_rng([seed, 0])
    scene = Scene(RIGS[rig].shapes(rng), int(n_frames), int(seed), rig, RIGS[rig].focus)
    if motion_scale != 1.0:
        scene = scale_motion(scene, motion_scale)
    if texture == "brick":
        return with_bricks(scene)
    return with_detail(scene) if texture == "detailed" else scene


def video_cameras(scene: Scene, n_cams: int, spread: float = 0.6) -> np.ndarray:
    """[K, 3, 4] OpenGL c2w of the video rig; row 0 (cam00) is the rig centre."""
    return RIGS[scene.rig].video(scene, n_cams, spread)


def static_cameras(scene: Scene, n_views: int, spread: float = 0.6) -> np.ndarray:
    """[V, 3, 4] c2w of the static capture: wider than the video rig, varying toe-in (seeded)."""
    return RIGS[scene.rig].static(scene, n_views, spread, np.random.default_rng([scene.seed, 1]))

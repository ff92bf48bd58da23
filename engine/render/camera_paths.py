"""Camera paths through time: spiral, circle, bullet time, orbit, and user path files.

A path is a :class:`CameraPath`: ``c2w`` [N, 3, 4] cameras in the checkpoint's *normalized*
world (OpenGL axes [right, up, back], det +1 like every training camera; no x negation) and
``times`` [N] frame indices, one per pose. Path i is rendered at time ``times[i]``.

Generated paths start from the training poses stored in the checkpoint's camera table
(normalized c2w [K, 3, 4]) and look at a focus point in front of the rig (LLFF's rule):
``focus = 1 / ((1 - 0.75) / close + 0.75 / inf)`` with close = 0.9 min near and
inf = 5 max far (normalized units; far = infinity when the table holds no bounds).

The orbit (for bounded, inward-facing rigs) instead looks at the point the cameras converge on
(:func:`convergence_point`: closest to every optical axis in the least-squares sense) and moves on
the circle through the rig's camera ring around the vertical axis through that point (radius and
height: the cameras' mean). A ring covering the whole circle is orbited once; a partial arc (e.g.
cameras on 120 degrees) is swept from one end to the other and back, so the video loops.

Path file (``--path_file poses.json``)::

    {"frames": [{"c2w": [[r00, r01, r02, x], [r10, r11, r12, y], [r20, r21, r22, z]], "time": 0}, ...],
     "focal": 60.0,         # optional, pixels at "hw"; default: the training focal
     "hw": [72, 96]}        # optional, [H, W]; default: the training size

``c2w`` is a 3x4 (or 4x4 with last row 0 0 0 1) camera-to-world matrix in *world units*
(the units and axes of ``poses_bounds.npy`` after its conversion to OpenGL [right, up, back]):
columns are the camera's right, up and backward axes and its centre. The rotation must be
orthonormal with det +1. ``time`` is a frame index in [0, T) (optional, default: pose index mod T).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import UserError
from dataLoader.atomic_io import write_json
from dataLoader.poses import NEAR_FACTOR, SceneNormalization, average_pose, look_at, unit
from dataLoader.rig_geometry import view_dirs, view_spread_deg

PATHS = ("spiral", "circle", "bullet_time", "orbit")


@dataclass(frozen=True)
class CameraPath:
    """c2w: [N, 3, 4] normalized-world cameras; times: [N] int frame indices;
    focal (pixels) and hw (H, W) override the training intrinsics when not None."""

    c2w: np.ndarray
    times: np.ndarray
    focal: float | None = None
    hw: tuple[int, int] | None = None

    def __len__(self) -> int:
        return self.c2w.shape[0]


def focus_depth(cameras: dict) -> float:
    """Normalized distance from the rig to the point the paths look at (see module doc)."""
    bounds = cameras.get("bounds")
    if bounds is not None:
        near, far = float(np.min(bounds[:, 0])), float(np.max(bounds[:, 1]))
    else:  # the normalization puts the nearest content at 1 / NEAR_FACTOR
        near, far = 1.0 / NEAR_FACTOR, np.inf
    return 1.0 / ((1.0 - 0.75) / (0.9 * near) + 0.75 / (5.0 * far))


def _rig_frame(cameras: dict):
    """-> (average pose [3, 4], up [3], camera centres in the average frame [K, 3])."""
    c2w = np.asarray(cameras["c2w"], dtype=np.float64)
    avg = average_pose(c2w)
    up = unit(c2w[:, :, 1].sum(0))
    local = (c2w[:, :, 3] - avg[:, 3]) @ avg[:, :3]
    return avg, up, local


def _loop_times(n: int, frames: tuple[int, int]) -> np.ndarray:
    """Pose i -> frame start + (i mod length) for the frame range [start, stop)."""
    start, stop = frames
    return start + np.arange(n) % max(stop - start, 1)


def spiral_path(cameras: dict, n_views: int, frames: tuple[int, int], rads_scale: float = 0.5,
                n_rots: float = 1.0, zrate: float = 0.5) -> CameraPath:
    """LLFF spiral around the average pose: radii = 90th percentile of |centres| x rads_scale."""
    avg, up, local = _rig_frame(cameras)
    focus = focus_depth(cameras)
    rads = np.percentile(np.abs(local), 90, axis=0) * rads_scale
    rads = np.maximum(rads, 1e-3 * focus)
    target = avg[:, 3] - focus * avg[:, 2]
    poses = []
    for theta in np.linspace(0.0, 2 * np.pi * n_rots, n_views + 1)[:-1]:
        offset = np.array([np.cos(theta), -np.sin(theta), -np.sin(theta * zrate)]) * rads
        poses.append(look_at(avg[:, 3] + avg[:, :3] @ offset, target, up))
    return CameraPath(np.stack(poses), _loop_times(n_views, frames))


def circle_path(cameras: dict, n_views: int, frames: tuple[int, int], rads_scale: float = 0.5) -> CameraPath:
    """A flat circle in the average pose's image plane (radius: mean of the spiral's x/y radii)."""
    avg, up, local = _rig_frame(cameras)
    focus = focus_depth(cameras)
    radius = max(float(np.percentile(np.abs(local[:, :2]), 90, axis=0).mean()) * rads_scale, 1e-3 * focus)
    target = avg[:, 3] - focus * avg[:, 2]
    poses = []
    for theta in np.linspace(0.0, 2 * np.pi, n_views + 1)[:-1]:
        offset = radius * np.array([np.cos(theta), np.sin(theta), 0.0])
        poses.append(look_at(avg[:, 3] + avg[:, :3] @ offset, target, up))
    return CameraPath(np.stack(poses), _loop_times(n_views, frames))


def bullet_time_path(cameras: dict, n_views: int, freeze_frame: int) -> CameraPath:
    """Time frozen at ``freeze_frame``; the camera sweeps once from the rig's leftmost to its rightmost
    camera position (at the mean height and depth), always looking at the focus point."""
    avg, up, local = _rig_frame(cameras)
    focus = focus_depth(cameras)
    target = avg[:, 3] - focus * avg[:, 2]
    lo, hi = float(local[:, 0].min()), float(local[:, 0].max())
    if hi - lo < 1e-6:  # a single camera column: sweep +-10 % of the focus distance
        lo, hi = -0.1 * focus, 0.1 * focus
    mean = local.mean(0)
    poses = [look_at(avg[:, 3] + avg[:, :3] @ np.array([x, mean[1], mean[2]]), target, up)
             for x in np.linspace(lo, hi, n_views)]
    return CameraPath(np.stack(poses), np.full(len(poses), int(freeze_frame)))


def convergence_point(cameras: dict, min_spread_deg: float = 5.0) -> np.ndarray:
    """The point [3] nearest to every camera's optical axis (least squares), in normalized world.

    Near-parallel axes (a spread under ``min_spread_deg``) have no stable crossing, and a crossing
    behind a camera is no convergence: the rig's focus point in front of the average pose is
    returned instead."""
    c2w = np.asarray(cameras["c2w"], dtype=np.float64)
    fwd = view_dirs(c2w)
    if len(c2w) > 1 and view_spread_deg(c2w) >= min_spread_deg:
        proj = np.eye(3)[None] - fwd[:, :, None] * fwd[:, None, :]  # [K, 3, 3] off-axis projectors
        point = np.linalg.lstsq(proj.sum(0), np.einsum("kij,kj->i", proj, c2w[:, :, 3]), rcond=None)[0]
        if np.all(np.einsum("ki,ki->k", point - c2w[:, :, 3], fwd) > 0):
            return point
    avg = average_pose(c2w)
    return avg[:, 3] - focus_depth(cameras) * avg[:, 2]


def _arc(azimuth: np.ndarray) -> tuple[float, float, bool]:
    """Camera azimuths [K] (radians) -> (start, span, full circle): the arc that leaves out the widest gap."""
    a = np.sort(np.mod(azimuth, 2 * np.pi))
    gaps = np.diff(np.concatenate([a, a[:1] + 2 * np.pi]))
    i = int(np.argmax(gaps))
    return float(a[(i + 1) % len(a)]), 2 * np.pi - float(gaps[i]), bool(len(a) > 2 and gaps[i] <= np.pi / 2)


def _ring_axis(c2w: np.ndarray) -> np.ndarray:
    """Vertical axis [3] of the orbit: the normal of the plane through the camera centres (oriented like
    the cameras' mean up), or the mean up itself when the centres span no plane or the plane stands upright."""
    up = unit(c2w[:, :, 1].sum(0))
    centres = c2w[:, :, 3] - c2w[:, :, 3].mean(0)
    if len(centres) < 3:
        return up
    sv, vt = np.linalg.svd(centres)[1:]
    normal = vt[2] * np.sign(vt[2] @ up or 1.0)
    if sv[1] < 1e-3 * max(sv[0], 1e-12) or normal @ up < 0.7:
        return up
    return normal


def orbit_path(cameras: dict, n_views: int, frames: tuple[int, int]) -> CameraPath:
    """Cameras on the circle through the rig's camera ring, looking at :func:`convergence_point`."""
    c2w = np.asarray(cameras["c2w"], dtype=np.float64)
    target = convergence_point(cameras)
    up = _ring_axis(c2w)
    rel = c2w[:, :, 3] - target
    flat = rel - (rel @ up)[:, None] * up  # camera offsets in the horizontal plane through the target
    dist = np.linalg.norm(flat, axis=-1)
    if dist.max() < 1e-6:
        raise UserError("orbit path: the cameras sit on the vertical axis through the point they look at")
    e1 = unit(flat[int(np.argmax(dist))])
    e2 = np.cross(up, e1)
    start, span, full = _arc(np.arctan2(flat @ e2, flat @ e1))
    u = np.arange(n_views) / n_views
    # once round a full ring; along a partial arc there and back (0 -> span -> 0, smooth at both ends)
    angles = start + (2 * np.pi * u if full else span * 0.5 * (1 - np.cos(2 * np.pi * u)))
    ring = np.cos(angles)[:, None] * e1 + np.sin(angles)[:, None] * e2
    centres = target + float((rel @ up).mean()) * up + float(dist.mean()) * ring
    return CameraPath(np.stack([look_at(c, target, up) for c in centres]), _loop_times(n_views, frames))


def make_path(kind: str, cameras: dict, n_views: int, frames: tuple[int, int],
              freeze_frame: int = 0) -> CameraPath:
    """Registry front-end: kind in :data:`PATHS`."""
    if n_views < 1:
        raise UserError(f"--n_views must be >= 1, got {n_views}")
    if kind == "bullet_time":
        return bullet_time_path(cameras, n_views, freeze_frame)
    return {"spiral": spiral_path, "circle": circle_path, "orbit": orbit_path}[kind](cameras, n_views, frames)


# ------------------------------------------------------------------ path files
def _pose_matrix(raw, where: str) -> np.ndarray:
    try:
        m = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{where}: c2w is not a numeric matrix") from None
    if m.shape == (4, 4):
        if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-6):
            raise UserError(f"{where}: a 4x4 c2w must end with the row [0, 0, 0, 1]")
        m = m[:3]
    if m.shape != (3, 4):
        raise UserError(f"{where}: c2w must be 3x4 or 4x4, got shape {list(m.shape)}")
    if not np.all(np.isfinite(m)):
        raise UserError(f"{where}: c2w holds NaN or inf")
    rot = m[:, :3]
    if not np.allclose(rot.T @ rot, np.eye(3), atol=1e-3) or np.linalg.det(rot) < 0:
        raise UserError(f"{where}: c2w rotation is not orthonormal with det +1 "
                        f"(det {np.linalg.det(rot):.4f}); columns must be right, up, back axes")
    return m


def _frame_time(entry: dict, i: int, n_frames: int, where: str) -> int:
    t = entry.get("time", i % n_frames)
    if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < n_frames:
        raise UserError(f"{where}: time must be an integer frame index in [0, {n_frames}), got {t!r}")
    return t


def _intrinsics(doc: dict, path: Path) -> tuple[float | None, tuple[int, int] | None]:
    focal, hw = doc.get("focal"), doc.get("hw")
    if focal is not None and (not isinstance(focal, (int, float)) or not np.isfinite(focal) or focal <= 0):
        raise UserError(f"{path}: focal must be a positive number, got {focal!r}")
    if hw is not None:
        if not (isinstance(hw, list) and len(hw) == 2 and all(isinstance(v, int) and v > 0 for v in hw)):
            raise UserError(f"{path}: hw must be [H, W] positive integers, got {hw!r}")
        hw = (hw[0], hw[1])
    return (None if focal is None else float(focal)), hw


def load_path_file(path: str | Path, norm: SceneNormalization, n_frames: int) -> CameraPath:
    """Read and validate a path file (format in the module doc) -> normalized :class:`CameraPath`."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise UserError(f"{path}: cannot read path file ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    frames = doc.get("frames") if isinstance(doc, dict) else None
    if not isinstance(frames, list) or not frames:
        raise UserError(f"{path}: expected an object with a non-empty list \"frames\"")
    poses, times = [], []
    for i, entry in enumerate(frames):
        where = f"{path}: frame {i}"
        if not isinstance(entry, dict) or "c2w" not in entry:
            raise UserError(f"{where}: expected an object with a \"c2w\" matrix")
        poses.append(_pose_matrix(entry["c2w"], where))
        times.append(_frame_time(entry, i, n_frames, where))
    focal, hw = _intrinsics(doc, path)
    return CameraPath(norm.apply(np.stack(poses)), np.asarray(times), focal, hw)


def save_path_file(path: str | Path, cam_path: CameraPath, norm: SceneNormalization) -> None:
    """Write ``cam_path`` as a path file in world units (the inverse of :func:`load_path_file`)."""
    world = norm.unapply(np.asarray(cam_path.c2w, dtype=np.float64))
    doc: dict = {"frames": [{"c2w": m.tolist(), "time": int(t)} for m, t in zip(world, cam_path.times)]}
    if cam_path.focal is not None:
        doc["focal"] = float(cam_path.focal)
    if cam_path.hw is not None:
        doc["hw"] = list(cam_path.hw)
    write_json(path, doc)

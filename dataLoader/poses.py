"""``poses_bounds.npy`` parsing and the single scene normalization (SPEC §4).

File convention (LLFF): one row per camera, 17 numbers: the row-major 3x5
matrix ``[R | c | (H, W, f)]`` then ``near, far``. The columns of ``R`` are the
camera axes in world coordinates ordered [down, right, backwards]; ``c`` is the
camera centre. Everything in this toolkit works in [right, up, backwards]
("OpenGL") camera axes; the conversion happens once, in :func:`load_poses_bounds`.

The normalization recentres the world on a proper (det +1) average pose and
scales lengths by ``1 / (0.75 * min near)`` so the nearest content sits at
z ~ -1.33, in front of the NDC near plane z = -1.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from core.errors import UserError
from dataLoader.atomic_io import save_npy, write_text

NEAR_FACTOR = 0.75
ROTATION_TOL = 1e-3  # max |R^T R - I| entry and |det R - 1| accepted for a camera rotation


def check_rotations(rot: np.ndarray, source: str) -> None:
    """UserError unless every rot [K, 3, 3] is a proper rotation: R^T R = I and det R = +1 within ROTATION_TOL.

    A mirrored camera (det -1) or a sheared one (det 1 but skewed axes) is refused by row index.
    """
    gram_err = np.abs(np.swapaxes(rot, -1, -2) @ rot - np.eye(3)).max(axis=(-2, -1))
    dets = np.linalg.det(rot)
    skewed = [int(i) for i in np.flatnonzero(gram_err > ROTATION_TOL)]
    if skewed:
        raise UserError(f"{source}: rotation blocks of rows {skewed} are not orthonormal "
                        f"(max |R^T R - I| = {gram_err.max():.3g}, tolerance {ROTATION_TOL:g})")
    mirrored = [int(i) for i in np.flatnonzero(np.abs(dets - 1) > ROTATION_TOL)]
    if mirrored:
        raise UserError(f"{source}: rotation blocks of rows {mirrored} have det {np.round(dets[mirrored], 4).tolist()} "
                        f"(a mirrored camera; a rotation needs det +1, tolerance {ROTATION_TOL:g})")


@dataclass(frozen=True)
class CameraRig:
    """Cameras of one capture, in world units, OpenGL axes.

    c2w: [K, 3, 4] camera-to-world ([right, up, backwards] columns, then centre).
    hwf: (H, W, focal) in pixels at the resolution stored in the poses file.
    bounds: [K, 2] near/far camera-z in world units.
    names: camera names in row order (e.g. ``cam00``), or ``None`` if unknown.
    """

    c2w: np.ndarray
    hwf: tuple[float, float, float]
    bounds: np.ndarray
    names: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return self.c2w.shape[0]


def llff_to_opengl(r_llff: np.ndarray) -> np.ndarray:
    """[..., 3, 3] LLFF [down, right, back] columns -> [right, up, back]."""
    return np.stack([r_llff[..., 1], -r_llff[..., 0], r_llff[..., 2]], axis=-1)


def opengl_to_llff(r_gl: np.ndarray) -> np.ndarray:
    """[..., 3, 3] [right, up, back] columns -> LLFF [down, right, back]."""
    return np.stack([-r_gl[..., 1], r_gl[..., 0], r_gl[..., 2]], axis=-1)


def parse_poses_bounds(arr: np.ndarray, source: str = "poses array") -> CameraRig:
    """[K, 17] LLFF array -> :class:`CameraRig`. Raises UserError on bad content."""
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 17:
        raise UserError(f"{source}: expected an N x 17 array, got shape {arr.shape}")
    if len(arr) == 0:
        raise UserError(f"{source}: no cameras")
    if not np.all(np.isfinite(arr)):
        bad = sorted({int(i) for i in np.argwhere(~np.isfinite(arr))[:, 0]})
        raise UserError(f"{source}: NaN or inf values in rows {bad}")
    mats = arr[:, :15].reshape(-1, 3, 5)
    hwf = mats[0, :, 4]
    if not np.allclose(mats[:, :, 4], hwf[None], rtol=1e-4):
        raise UserError(f"{source}: cameras disagree on (H, W, focal); one shared intrinsic is required")
    if np.any(hwf <= 0):
        raise UserError(f"{source}: non-positive H, W or focal {hwf.tolist()}")
    rot = llff_to_opengl(mats[:, :, :3])
    check_rotations(rot, source)
    bounds = arr[:, 15:17]
    if np.any(bounds[:, 0] <= 0) or np.any(bounds[:, 1] <= bounds[:, 0]):
        raise UserError(f"{source}: near/far bounds must satisfy 0 < near < far")
    c2w = np.concatenate([rot, mats[:, :, 3:4]], axis=-1)
    return CameraRig(c2w=c2w, hwf=(float(hwf[0]), float(hwf[1]), float(hwf[2])), bounds=bounds)


def cams_file(poses_path: Path) -> Path:
    """The camera-name list written beside a poses file (one name per row)."""
    return poses_path.with_name(poses_path.stem + "_cams.txt")


def load_poses_bounds(path: str | Path) -> CameraRig:
    """Read ``poses_bounds.npy`` (+ ``poses_bounds_cams.txt`` names when present)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: poses file not found")
    try:
        arr = np.load(path)
    except (ValueError, OSError) as exc:
        raise UserError(f"{path}: not a readable .npy file ({exc})") from None
    rig = parse_poses_bounds(arr, str(path))
    names_path = cams_file(path)
    if names_path.is_file():
        names = tuple(n.strip() for n in names_path.read_text().splitlines() if n.strip())
        if len(names) != len(rig):
            raise UserError(f"{names_path}: lists {len(names)} cameras but {path.name} has {len(rig)} rows")
        rig = CameraRig(rig.c2w, rig.hwf, rig.bounds, names)
    return rig


def to_poses_bounds(c2w: np.ndarray, hwf, bounds: np.ndarray) -> np.ndarray:
    """Inverse of :func:`parse_poses_bounds`: c2w [K,3,4] OpenGL, hwf (H,W,f), bounds [K,2] -> [K,17]."""
    k = c2w.shape[0]
    mats = np.zeros((k, 3, 5))
    mats[:, :, :3] = opengl_to_llff(c2w[:, :, :3])
    mats[:, :, 3] = c2w[:, :, 3]
    mats[:, :, 4] = np.asarray(hwf, dtype=np.float64)[None]
    return np.concatenate([mats.reshape(k, 15), np.asarray(bounds, dtype=np.float64)], axis=1)


def save_poses_bounds(path: str | Path, c2w, hwf, bounds, names=None) -> None:
    """Write ``poses_bounds.npy`` (and the camera names beside it when given), atomically."""
    path = Path(path)
    arr = to_poses_bounds(np.asarray(c2w), hwf, np.asarray(bounds))
    save_npy(path, arr)
    if names is not None:
        write_text(cams_file(path), "".join(f"{n}\n" for n in names))


def unit(v: np.ndarray) -> np.ndarray:
    """Vectors [..., 3] scaled to length 1 along the last axis."""
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def look_at(centre, target, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """[3, 4] OpenGL c2w (det +1) of a camera at ``centre`` [3] looking at ``target`` [3]; ``up`` [3] is
    the rough up direction."""
    centre = np.asarray(centre, np.float64)
    back = unit(centre - np.asarray(target, np.float64))
    right = unit(np.cross(np.asarray(up, np.float64), back))
    return np.stack([right, np.cross(back, right), back, centre], axis=1)


def average_pose(c2w: np.ndarray) -> np.ndarray:
    """[K,3,4] -> [3,4] right-handed average frame (det +1): mean centre, mean back axis."""
    centre = c2w[:, :, 3].mean(0)
    back = unit(c2w[:, :, 2].sum(0))
    up_hint = c2w[:, :, 1].sum(0)
    right = unit(np.cross(up_hint, back))
    up = np.cross(back, right)
    return np.stack([right, up, back, centre], axis=1)


@dataclass(frozen=True)
class SceneNormalization:
    """World -> normalized-world transform shared by every stage (SPEC §4).

    ``x_norm = scale * R_avg^T (x_world - c_avg)``. ``ndc_hwf`` holds the NDC
    intrinsics (H, W, focal) in pixels of the poses file (only ratios matter).
    ``aabb`` is the model's box in ray space: NDC coordinates for forward-facing
    scenes, normalized-world coordinates for bounded ones.
    """

    avg_c2w: tuple[tuple[float, ...], ...]
    scale: float
    ndc_hwf: tuple[float, float, float]
    aabb: tuple[tuple[float, float, float], tuple[float, float, float]]
    ndc: bool = True

    @staticmethod
    def from_rig(rig: CameraRig, aabb, ndc: bool = True) -> SceneNormalization:
        avg = average_pose(rig.c2w)
        assert np.linalg.det(avg[:, :3]) > 0.999
        scale = 1.0 / (NEAR_FACTOR * float(rig.bounds[:, 0].min()))
        return SceneNormalization(
            avg_c2w=tuple(tuple(float(v) for v in row) for row in avg),
            scale=scale,
            ndc_hwf=tuple(float(v) for v in rig.hwf),
            aabb=tuple(tuple(float(v) for v in row) for row in np.asarray(aabb, dtype=np.float64)),
            ndc=bool(ndc),
        )

    @property
    def avg(self) -> np.ndarray:
        return np.asarray(self.avg_c2w, dtype=np.float64)

    def apply_points(self, points: np.ndarray) -> np.ndarray:
        """[..., 3] world points -> [..., 3] normalized-world points."""
        return self.scale * (points - self.avg[:, 3]) @ self.avg[:, :3]

    def apply(self, c2w: np.ndarray) -> np.ndarray:
        """[K,3,4] world cameras -> [K,3,4] normalized cameras (rotation kept orthonormal)."""
        rot = np.einsum("ji,kjl->kil", self.avg[:, :3], c2w[:, :, :3])
        return np.concatenate([rot, self.apply_points(c2w[:, :, 3])[:, :, None]], axis=-1)

    def unapply(self, c2w_norm: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`apply`: [K,3,4] normalized -> world."""
        rot_avg, c_avg = self.avg[:, :3], self.avg[:, 3]
        rot = np.einsum("ij,kjl->kil", rot_avg, c2w_norm[:, :, :3])
        centre = c2w_norm[:, :, 3] @ rot_avg.T / self.scale + c_avg
        return np.concatenate([rot, centre[:, :, None]], axis=-1)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> SceneNormalization:
        return SceneNormalization(
            avg_c2w=tuple(tuple(float(v) for v in row) for row in d["avg_c2w"]),
            scale=float(d["scale"]),
            ndc_hwf=tuple(float(v) for v in d["ndc_hwf"]),
            aabb=tuple(tuple(float(v) for v in row) for row in d["aabb"]),
            ndc=bool(d.get("ndc", True)),
        )

    def same_world(self, other: SceneNormalization, tol: float = 1e-5) -> bool:
        """True when both normalizations map world points identically (aabb may differ)."""
        return (
            np.allclose(self.avg, other.avg, atol=tol)
            and abs(self.scale - other.scale) <= tol * max(1.0, self.scale)
            and np.allclose(self.ndc_hwf, other.ndc_hwf, rtol=tol)
            and self.ndc == other.ndc
        )

    def require_same_world(self, other: SceneNormalization, what: str) -> None:
        if not self.same_world(other):
            raise UserError(
                f"{what}: scene normalization differs from the model's "
                f"(scale {other.scale:.6g} vs {self.scale:.6g}); data and checkpoint are not in one world"
            )

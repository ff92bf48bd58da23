"""The scene directory layout (SPEC §3): the one place that knows the name of every file of a scene.

::

    D/frames/camXX/NNNN.png      one folder per camera, frames in string order (static capture: one image each)
    D/poses_bounds.npy           LLFF poses + near/far bounds, one row per camera folder
    D/poses_bounds_cams.txt      the camera names of the rows (optional)
    D/sparse/0/                  COLMAP model (imgs2poses.py)
    D/colmap_depth.npz           sparse keypoint depth (colmap2depth.py)
    D/depth/all_depth.npz        dense static-model depth (static_model2depth.py)
    D/gt_depth/camXX.npy         ground-truth camera-z depth [T, H, W] (synthetic scenes)
    D/cache/<key>/               the frame cache (dataLoader.frame_cache)
    D/static/                    a static capture of the same world (same layout)
    D/videos/camXX.mp4, D/meta.json (synthetic scenes)

Also here: the checks that tie the files together (pose rows vs camera folders, aspect ratio,
one image per camera, a valid static capture).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio

from core.errors import UserError
from dataLoader.poses import CameraRig, cams_file, load_poses_bounds

POSES_FILE = "poses_bounds.npy"
SPARSE_MODEL = Path("sparse") / "0"
SPARSE_DEPTH = "colmap_depth.npz"  # the default of the colmap_depth_path option
DENSE_DEPTH = "depth/all_depth.npz"  # the default of the depthmap_npy_path option
VIDEO_DEPTH = "depth/video_depth.npz"  # video2depth.py's output (plane sweep on the videos' medians)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class SceneDir:
    """Paths of one scene directory ``root`` (nothing is read or checked on construction)."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    # ------------------------------------------------------------------ files
    @property
    def frames(self) -> Path:
        return self.root / "frames"

    @property
    def images(self) -> Path:
        """A flat ``images/`` folder (photo sets for imgs2poses.py)."""
        return self.root / "images"

    @property
    def poses(self) -> Path:
        return self.root / POSES_FILE

    @property
    def camera_names(self) -> Path:
        return cams_file(self.poses)

    @property
    def sparse_workspace(self) -> Path:
        return self.root / SPARSE_MODEL.parent

    @property
    def sparse_model(self) -> Path:
        return self.root / SPARSE_MODEL

    @property
    def sparse_depth(self) -> Path:
        return self.root / SPARSE_DEPTH

    @property
    def dense_depth(self) -> Path:
        return self.root / DENSE_DEPTH

    @property
    def gt_depth_dir(self) -> Path:
        return self.root / "gt_depth"

    def gt_depth(self, cam: str) -> Path:
        return self.gt_depth_dir / f"{cam}.npy"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def videos(self) -> Path:
        return self.root / "videos"

    @property
    def meta(self) -> Path:
        return self.root / "meta.json"

    @property
    def static(self) -> SceneDir:
        return SceneDir(self.root / "static")

    def resolve(self, path: str | Path) -> Path:
        """A path given relative to the scene (config keys such as ``depthmap_npy_path``) or absolute."""
        p = Path(path)
        return p if p.is_absolute() else self.root / p

    # ------------------------------------------------------------------ checks
    def load_rig(self) -> CameraRig:
        return load_poses_bounds(self.poses)

    def check_rig(self, rig: CameraRig, cam_names, hw: tuple[int, int] | None = None) -> CameraRig:
        """``rig`` checked against the camera folders (rows, names) and, given ``hw``, the frames' aspect."""
        check_rig_matches_cameras(rig, tuple(cam_names), self.poses)
        if hw is not None:
            check_aspect(rig, hw, self.poses)
        return rig

    def one_image_per_camera(self) -> tuple[list[str], list[Path]]:
        """(camera names, image files) of a static capture: exactly one image in every ``frames/camXX``."""
        names, files = [], []
        for cam in list_cameras(self.root):
            imgs = image_files(cam)
            if not imgs:
                raise UserError(f"{cam}: no image ({', '.join(IMAGE_SUFFIXES)}) in this camera folder; expected "
                                f"exactly one image")
            if len(imgs) > 1:
                raise UserError(f"{cam}: {len(imgs)} images; expected exactly one image (a static capture has one "
                                f"photo per camera folder; is this a video scene?)")
            names.append(cam.name)
            files.append(imgs[0])
        return names, files

    def validate_static_capture(self) -> tuple[list[str], tuple[int, int], CameraRig]:
        """Check ``frames/camXX/`` (one png/jpg each, >= 2 views, one size) against the poses file."""
        if not self.root.is_dir():
            raise UserError(f"{self.root}: static capture directory not found")
        names, files = self.one_image_per_camera()
        if len(files) < 2:
            raise UserError(f"{self.frames}: {len(files)} view; a static capture needs at least 2 views")
        sizes = [image_size(f) for f in files]
        for f, hw in zip(files, sizes):
            if hw != sizes[0]:
                raise UserError(f"{f}: image is {hw[1]}x{hw[0]} but {names[0]}'s is {sizes[0][1]}x{sizes[0][0]} "
                                f"(all views of a static capture must have one size)")
        return names, sizes[0], self.check_rig(self.load_rig(), names, sizes[0])


def check_aspect(rig: CameraRig, hw: tuple[int, int], poses_path: Path) -> None:
    """UserError when the frames' aspect ratio differs from the poses file's intrinsics by over 1 %."""
    ph, pw, _ = rig.hwf
    if abs(hw[1] / hw[0] - pw / ph) > 0.01 * pw / ph:
        raise UserError(f"{poses_path}: pose intrinsics are {pw:.0f}x{ph:.0f} but frames are "
                        f"{hw[1]}x{hw[0]} (different aspect ratio)")


def check_rig_matches_cameras(rig: CameraRig, cam_names: tuple[str, ...], poses_path: Path) -> None:
    if len(rig) != len(cam_names):
        raise UserError(f"{poses_path}: {len(rig)} pose rows but {len(cam_names)} camera folders "
                        f"({', '.join(cam_names)})")
    if rig.names is not None and tuple(rig.names) != tuple(cam_names):
        raise UserError(f"{poses_path}: camera names {list(rig.names)} do not match the frame folders "
                        f"{list(cam_names)}")


def image_files(folder: Path) -> list[Path]:
    """Image files of ``folder`` (png/jpg, no hidden files) sorted as strings: the frame order everywhere."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def list_cameras(datadir: Path, exclude: tuple[str, ...] = ()) -> list[Path]:
    """Sorted camera folders ``frames/camXX`` (hidden ones and the names in ``exclude`` skipped)."""
    frames = SceneDir(datadir).frames
    if not frames.is_dir():
        raise UserError(f"{frames}: no frames folder (run python -m tools.prepare_video on the videos first)")
    cams = sorted(p for p in frames.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and p.name not in exclude)
    if not cams:
        raise UserError(f"{frames}: no camera folders")
    return cams


def unreadable_image(path: Path, exc: Exception) -> UserError:
    """One line whatever the decoder printed (imageio's messages span several lines)."""
    detail = " ".join(str(exc).split())[:200] or type(exc).__name__
    if Path(path).is_file() and Path(path).stat().st_size == 0:
        detail = "empty file"
    return UserError(f"{path}: unreadable image ({detail})")


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file; UserError naming it when it cannot be read."""
    try:
        props = iio.improps(path)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad file
        raise unreadable_image(path, exc) from None
    return int(props.shape[0]), int(props.shape[1])

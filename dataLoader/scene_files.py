"""A scene's cameras as training sees them: pose rows and frame folders, minus ``exclude_cams``.

Rows of ``poses_bounds.npy`` belong to the sorted camera names: the names in
``poses_bounds_cams.txt`` when present, else the sorted frame folders together with the excluded
cameras whose folders are absent (N3DV ships coffee_martini's unsynchronised camera as a video and
a pose row; removing either one alone, or both, gives the same selection). Excluding a camera drops
its frames and its pose row together, so camera indices (``test_cams``) count the remaining ones.

Resolution: ``downsample`` divides the capture size that ``poses_bounds.npy`` states (H, W of its
intrinsics), in every stage. Frames that were already reduced by ``prepare_video.py --downsample``
are resized by what remains (nothing, when both factors agree).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError
from dataLoader.frame_cache import FrameSource, scan_frames, target_size
from dataLoader.poses import CameraRig, load_poses_bounds
from dataLoader.scene_layout import SceneDir, list_cameras


@dataclass(frozen=True)
class SceneFiles:
    """Pose rows and frame files of the selected cameras, in the same order (rig.names == src.cam_names)."""

    rig: CameraRig
    src: FrameSource
    poses_path: Path
    excluded: tuple[str, ...]


def row_names(rig: CameraRig, folders: tuple[str, ...], exclude: tuple[str, ...], poses_path: Path) -> tuple[str, ...]:
    """Camera name of each pose row (see the module docstring); UserError when rows and cameras disagree."""
    absent = tuple(n for n in exclude if n not in folders)
    if rig.names is None and len(rig) == len(folders) + len(absent):
        names = tuple(sorted(folders + absent))
    elif rig.names is None and len(rig) == len(folders):
        names = folders
    elif rig.names is None:
        raise UserError(f"{poses_path}: {len(rig)} pose rows but {len(folders)} camera folders "
                        f"({', '.join(folders)}); name a camera without a folder in exclude_cams")
    else:
        names = tuple(rig.names)
    unknown = [n for n in exclude if n not in names]
    if unknown:
        raise UserError(f"exclude_cams: {unknown} name no camera of {poses_path.parent} "
                        f"(cameras: {', '.join(names)})")
    present = tuple(n for n in folders if n not in exclude)
    if len(names) - len(exclude) != len(present):
        raise UserError(f"{poses_path}: {len(rig)} pose rows but {len(folders)} camera folders "
                        f"({', '.join(folders)})")
    if tuple(n for n in names if n not in exclude) != present:
        raise UserError(f"{poses_path}: camera names {list(names)} do not match the frame folders {list(folders)}")
    return names


def load_scene_files(datadir: str | Path, frame_start: int = 0, n_frames: int = -1,
                     exclude: tuple[str, ...] = ()) -> SceneFiles:
    """Validated poses and frames of ``datadir`` without the cameras named in ``exclude``."""
    datadir = Path(datadir)
    poses_path = SceneDir(datadir).poses
    rig = load_poses_bounds(poses_path)
    exclude = tuple(exclude)
    folders = tuple(p.name for p in list_cameras(datadir))
    names = row_names(rig, folders, exclude, poses_path)
    keep = [i for i, n in enumerate(names) if n not in exclude]
    if not keep:
        raise UserError(f"exclude_cams: {list(exclude)} leaves no camera in {datadir}")
    src = scan_frames(datadir, frame_start, n_frames, exclude=exclude)
    rig = CameraRig(rig.c2w[keep], rig.hwf, rig.bounds[keep], tuple(names[i] for i in keep))
    return SceneFiles(rig, src, poses_path, tuple(n for n in names if n in exclude))


def capture_hw(rig: CameraRig) -> tuple[int, int]:
    """(H, W) of the capture as ``poses_bounds.npy`` states it."""
    return int(round(rig.hwf[0])), int(round(rig.hwf[1]))


def training_hw(rig: CameraRig, downsample: float) -> tuple[int, int]:
    """(H, W) trained and rendered at: the capture size divided by ``downsample``."""
    if not downsample > 0:
        raise UserError(f"downsample must be > 0, got {downsample}")
    return target_size(capture_hw(rig), downsample)


def frames_factor(rig: CameraRig, frames_hw: tuple[int, int], downsample: float, source: Path) -> float:
    """Factor the frame files are divided by to reach :func:`training_hw` (1.0: used as they are).

    UserError when the frames are smaller than the requested size (they were extracted with a larger
    ``prepare_video.py --downsample``).
    """
    h, w = training_hw(rig, downsample)
    if frames_hw[1] < w:
        cap_h, cap_w = capture_hw(rig)
        raise UserError(f"{source}: frames are {frames_hw[1]}x{frames_hw[0]} but downsample {downsample:g} asks "
                        f"for {w}x{h} (capture {cap_w}x{cap_h}); use a downsample of at least "
                        f"{cap_w / frames_hw[1]:g} or extract the frames again with a smaller one")
    return 1.0 if frames_hw[1] == w else frames_hw[1] / w

"""Video and PNG input/output, and the ``prepare_video`` stage (SPEC §2, §3).

Videos are decoded with imageio-ffmpeg (the ffmpeg binary it ships; no system ffmpeg, no
shell); PNG and mp4 writing lives in :mod:`dataLoader.atomic_io`. Images are lossless PNG, always RGB order in memory
(``uint8 [H, W, 3]``); the BGR order of OpenCV never leaks out of this module.

Stage contract (:func:`extract_frames`):
    input   ``DATADIR/*.mp4`` or, when there are none, ``DATADIR/videos/*.mp4``
            (sorted by name; the file stem names the camera, e.g. ``cam00``).
    output  ``DATADIR/frames/<stem>/NNNN.png``: lossless PNG, uint8 RGB, numbered
            from 0000 whatever ``frame_start`` is (0000 = video frame ``frame_start``).
Every camera is decoded into a private temp folder inside DATADIR first; only
when all videos decoded and agree are the folders renamed into ``frames/``, so
an interrupted run never leaves a half-written camera folder behind.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
from tqdm import tqdm

from core.errors import UserError
from dataLoader.atomic_io import write_error, write_png
from dataLoader.scene_layout import SceneDir

log = logging.getLogger(__name__)

VIDEO_SUFFIX = ".mp4"


# --------------------------------------------------------------------------- PNG
def read_png(path: str | Path) -> np.ndarray:
    """Read an image file -> uint8 [H, W, 3] RGB (gray is expanded, alpha dropped)."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise UserError(f"{path}: missing or unreadable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Float image(s) in [0, 1] (any shape) -> uint8 by clipping and rounding."""
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


# ------------------------------------------------------------------------- video
@dataclass(frozen=True)
class VideoInfo:
    """Header facts of one video. ``n_frames_est`` is duration x fps (may be off by a frame)."""

    path: Path
    width: int
    height: int
    fps: float
    n_frames_est: int


def list_videos(datadir: str | Path) -> list[Path]:
    """``DATADIR/*.mp4``, else ``DATADIR/videos/*.mp4``, sorted by name. UserError when none."""
    datadir = Path(datadir)
    if not datadir.is_dir():
        raise UserError(f"{datadir}: data directory not found")
    for folder in (datadir, datadir / "videos"):
        found = sorted(p for p in folder.glob(f"*{VIDEO_SUFFIX}") if p.is_file())
        if found:
            return found
    raise UserError(f"{datadir}: no {VIDEO_SUFFIX} videos in it or in {datadir / 'videos'}")


def _corrupt(path: Path, exc: Exception) -> UserError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UserError(f"{path}: unreadable or corrupt video ({first})")


def probe_video(path: str | Path) -> VideoInfo:
    """Read a video's header (size, fps, duration) without decoding it. UserError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: video not found")
    gen = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(gen)
    except (OSError, RuntimeError, StopIteration) as exc:
        raise _corrupt(path, exc) from None
    finally:
        gen.close()
    w, h = meta["size"]
    fps = float(meta.get("fps") or 0.0)
    duration = float(meta.get("duration") or 0.0)
    return VideoInfo(path, int(w), int(h), fps, int(round(duration * fps)))


def read_video(path: str | Path, frame_start: int = 0, n_frames: int = -1) -> Iterator[np.ndarray]:
    """Decode frames ``frame_start .. frame_start + n_frames - 1`` (all to the end when n_frames < 0).

    Yields uint8 [H, W, 3] RGB arrays. Raises UserError for an unreadable video or
    (at the end of the iteration) for a range that runs past the last frame.
    """
    path = Path(path)
    if frame_start < 0:
        raise UserError(f"{path}: frame_start must be >= 0, got {frame_start}")
    gen = imageio_ffmpeg.read_frames(str(path))
    try:
        try:
            meta = next(gen)
        except (OSError, RuntimeError, StopIteration) as exc:
            raise _corrupt(path, exc) from None
        w, h = meta["size"]
        yield from _frames_in_range(path, gen, (h, w), frame_start, n_frames)
    finally:
        gen.close()


def _frames_in_range(path: Path, gen, hw, frame_start: int, n_frames: int) -> Iterator[np.ndarray]:
    index = -1
    end = frame_start + n_frames if n_frames >= 0 else None
    try:
        for index, raw in enumerate(gen):
            if end is not None and index >= end:
                return
            if index >= frame_start:
                yield np.frombuffer(raw, dtype=np.uint8).reshape(hw[0], hw[1], 3).copy()
    except (OSError, RuntimeError) as exc:
        raise _corrupt(path, exc) from None
    total = index + 1
    if frame_start >= total or (end is not None and end > total):
        last = "the end" if end is None else end - 1
        raise UserError(f"{path}: frame range {frame_start}..{last} is past the end of the video "
                        f"({total} frames)")


# ------------------------------------------------------------ prepare_video stage
@dataclass(frozen=True)
class ExtractSummary:
    """What :func:`extract_frames` wrote: ``n_videos`` folders of ``n_frames`` PNGs of ``size`` (W, H)."""

    frames_dir: Path
    cams: tuple[str, ...]
    n_frames: int
    size: tuple[int, int]

    def line(self) -> str:
        return (f"wrote {len(self.cams)} cameras x {self.n_frames} frames "
                f"({self.size[0]}x{self.size[1]}) to {self.frames_dir}")


def output_size(width: int, height: int, downsample: float) -> tuple[int, int]:
    """(W, H) after dividing by ``downsample`` (rounded, at least 1 pixel)."""
    return max(1, int(round(width / downsample))), max(1, int(round(height / downsample)))


def _check_sizes(infos: list[VideoInfo]) -> None:
    ref = infos[0]
    for info in infos[1:]:
        if (info.width, info.height) != (ref.width, ref.height):
            raise UserError(f"{info.path.name} is {info.width}x{info.height} but {ref.path.name} is "
                            f"{ref.width}x{ref.height}; all videos must have one size")


def _check_counts(counts: dict[str, int]) -> None:
    if len(set(counts.values())) > 1:
        listing = ", ".join(f"{name}: {n}" for name, n in counts.items())
        raise UserError(f"videos have different frame counts ({listing}); pass --n_frames to use a "
                        f"common range")


def _check_targets(frames_dir: Path, stems: list[str], overwrite: bool) -> None:
    existing = [s for s in stems if (frames_dir / s).exists()]
    if existing and not overwrite:
        raise UserError(f"{frames_dir}: frames already exist for {', '.join(existing)}; "
                        f"pass --overwrite 1 to replace them")


def _check_range(infos: list[VideoInfo], frame_start: int, n_frames: int) -> None:
    """Early check against the header's frame estimate (2 frames of slack; decoding has the last word)."""
    for info in infos:
        if frame_start + max(n_frames, 1) > info.n_frames_est + 2:
            raise UserError(f"{info.path}: frame range starting at {frame_start} (n_frames {n_frames}) is "
                            f"past the end of the video (about {info.n_frames_est} frames)")


def _decode_to_folder(info: VideoInfo, folder: Path, frame_start: int, n_frames: int,
                      size: tuple[int, int] | None) -> int:
    """Decode one video into ``folder/NNNN.png``; returns the number of frames written."""
    folder.mkdir(parents=True)
    count = 0
    total = n_frames if n_frames > 0 else max(info.n_frames_est - frame_start, 0)
    frames = tqdm(read_video(info.path, frame_start, n_frames), desc=info.path.stem, unit="frame",
                  total=total or None, leave=False)
    for count, frame in enumerate(frames, start=1):
        if size is not None:
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        write_png(folder / f"{count - 1:04d}.png", frame)
    return count


def _move_into_place(staging: Path, frames_dir: Path, stems: list[str]) -> None:
    frames_dir.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        target = frames_dir / stem
        if target.exists():
            target.replace(staging / f"{stem}.old")
        (staging / stem).replace(target)


def extract_frames(datadir: str | Path, frame_start: int = 0, n_frames: int = -1,
                   downsample: float = 1.0, overwrite: bool = False) -> ExtractSummary:
    """Decode every video of DATADIR into ``DATADIR/frames/<stem>/NNNN.png`` (see module doc).

    n_frames < 0 means "to the end"; then all videos must have the same length.
    downsample >= 1 divides the size (cv2.INTER_AREA). Raises UserError on bad input
    before anything in ``frames/`` is touched.
    """
    datadir = Path(datadir)
    if downsample < 1.0:
        raise UserError(f"--downsample must be >= 1, got {downsample}")
    if n_frames == 0 or frame_start < 0:
        raise UserError(f"empty or negative frame range (frame_start {frame_start}, n_frames {n_frames})")
    videos = list_videos(datadir)
    stems = [v.stem for v in videos]
    frames_dir = SceneDir(datadir).frames
    _check_targets(frames_dir, stems, overwrite)
    infos = [probe_video(v) for v in videos]
    _check_sizes(infos)
    _check_range(infos, frame_start, n_frames)
    size = output_size(infos[0].width, infos[0].height, downsample)
    resize = None if size == (infos[0].width, infos[0].height) else size
    try:
        staging = Path(tempfile.mkdtemp(prefix=".prepare_video-", dir=datadir))
    except OSError as exc:
        raise write_error(frames_dir, exc) from None
    try:
        counts = {}
        for info in tqdm(infos, desc="videos", unit="video", disable=len(infos) < 2):
            counts[info.path.name] = _decode_to_folder(info, staging / info.path.stem, frame_start,
                                                       n_frames, resize)
        _check_counts(counts)
        _move_into_place(staging, frames_dir, stems)
    except UserError as exc:  # name the frames folder, not the private staging folder
        raise UserError(str(exc).replace(str(staging), str(frames_dir))) from None
        extra = sorted(p.name for p in frames_dir.iterdir() if p.is_dir() and p.name not in stems)
        if extra:
            log.warning("%s also holds %s, which no video here produced", frames_dir, ", ".join(extra))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExtractSummary(frames_dir, tuple(stems), next(iter(counts.values())), size)

"""Derived per-scene data, built once into ``<scene>/cache/<key>/`` (SPEC §3).

Contents of a cache directory:
  frames.npy   uint8 [K, H, W, T, 3]  resized frames, pixel-major so a ray's T colours are contiguous
  std.npy      float32 [K, H, W]      blurred per-pixel temporal std (mean over channels), in [0, 1] units
  median.npy   uint8 [K, H, W, 3]     per-pixel temporal median (the lower one for an even frame count)
  mode.npy     uint8 [K, H, W, 3]     per-pixel temporal mode: the mean of the largest set of frames that
                                      agree within 8/255 (the background wherever it is the colour seen longest)
  meta.json    camera names, sizes, frame range, the key's inputs

The key hashes every parameter that shaped the data (downsample, frame range, blur, the
source files' names, sizes and mtimes). A cache is built camera by camera into a temp
directory ``cache/.tmp-<key>`` and renamed into place when complete, so a partial cache is
never trusted. Inside the temp dir, ``done/<k>`` marks camera k as flushed to disk (with its
``std_<k>.npy``, ``median_<k>.npy`` and ``mode_<k>.npy``): an interrupted build continues from the finished
cameras instead of starting over. ``cache/.lock-<key>`` serialises builds of the same key across processes.
Caches of an older ``CACHE_VERSION`` (their key differs) are removed when a new one is built.
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
from tqdm import tqdm

from core.errors import UserError
from dataLoader.atomic_io import save_npy, write_error, write_text
from dataLoader.scene_layout import SceneDir, image_files, image_size, list_cameras, unreadable_image
from dataLoader.temporal_stats import TemporalMoments, temporal_median, temporal_mode

try:
    import fcntl
except ImportError:  # Windows: no cross-process lock
    fcntl = None

log = logging.getLogger(__name__)
CACHE_VERSION = 3  # 2: median.npy; 3: mode.npy
COLOUR_MAPS = ("median", "mode")  # per-pixel uint8 [K, H, W, 3] maps of a cache, in FrameCache's field order


@dataclass(frozen=True)
class FrameSource:
    """Validated frame files of a scene: files[k][t] for camera k, frame t."""

    cam_names: tuple[str, ...]
    files: tuple[tuple[Path, ...], ...]
    hw: tuple[int, int]


def scan_frames(datadir: Path, frame_start: int = 0, n_frames: int = -1,
                exclude: tuple[str, ...] = ()) -> FrameSource:
    """Validate ``frames/camXX/*`` and select [frame_start, frame_start + n_frames) of every camera
    (camera folders named in ``exclude`` are skipped unread)."""
    frames = SceneDir(datadir).frames
    cams = list_cameras(datadir, exclude)
    all_files = [image_files(c) for c in cams]
    counts = {c.name: len(f) for c, f in zip(cams, all_files)}
    if len(set(counts.values())) != 1:
        raise UserError(f"{frames}: cameras have different frame counts {counts}")
    total = next(iter(counts.values()))
    if total == 0:
        raise UserError(f"{frames}: camera folders hold no images")
    end = total if n_frames < 0 else frame_start + n_frames
    if frame_start < 0 or end > total or end <= frame_start:
        raise UserError(f"{frames}: frame range [{frame_start}, {end}) is outside the "
                        f"{total} available frames")
    sizes = {c.name: image_size(f[0]) for c, f in zip(cams, all_files)}
    if len(set(sizes.values())) != 1:
        raise UserError(f"{frames}: cameras have different image sizes {sizes}")
    files = tuple(tuple(f[frame_start:end]) for f in all_files)
    return FrameSource(tuple(c.name for c in cams), files, next(iter(sizes.values())))


def target_size(hw: tuple[int, int], downsample: float) -> tuple[int, int]:
    """(H, W) after dividing by ``downsample`` (rounded, at least 1)."""
    return max(1, round(hw[0] / downsample)), max(1, round(hw[1] / downsample))


def auto_blur_kernel(width: int) -> int:
    """Odd blur kernel ~ width / 45 (31 px at 1352 px, the MixVoxels setting on N3DV)."""
    k = max(1, width // 45)
    return k if k % 2 else k + 1


def cache_key(src: FrameSource, downsample: float, blur_kernel: int) -> str:
    entries = [[str(p.relative_to(p.parents[2])), p.stat().st_size, p.stat().st_mtime_ns]
               for cam in src.files for p in cam]
    payload = json.dumps({"v": CACHE_VERSION, "downsample": downsample, "blur": blur_kernel,
                          "files": entries}, sort_keys=True)
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def read_frame(path: Path, hw: tuple[int, int], source_hw: tuple[int, int] | None = None) -> np.ndarray:
    """-> uint8 [H, W, 3] RGB resized to hw with area interpolation.

    ``source_hw``: the size every frame of the capture must have (UserError naming the file otherwise)."""
    try:
        img = iio.imread(path)
    except Exception as exc:  # noqa: BLE001
        raise unreadable_image(path, exc) from None
    if source_hw is not None and img.shape[:2] != tuple(source_hw):
        raise UserError(f"{path}: frame is {img.shape[1]}x{img.shape[0]} but the capture's frames are "
                        f"{source_hw[1]}x{source_hw[0]} (every frame of every camera must have one size)")
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = (img.astype(np.float64) / np.iinfo(img.dtype).max * 255).round().astype(np.uint8)
    if img.shape[:2] != hw:
        img = cv2.resize(img, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)
    return img


@contextmanager
def _build_lock(path: Path):
    """Exclusive advisory lock (released by the OS if the process dies); a no-op without fcntl."""
    with open(path, "a+") as fh:
        if fcntl is not None:
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _open_partial_build(tmp: Path, plan: dict, shape: tuple[int, ...]) -> tuple[np.memmap, set[int]]:
    """Reuse an interrupted build of the same key (its finished cameras), or start a fresh one.

    A camera counts as finished only when its marker ``done/<k>`` exists; markers are written after
    the camera's frames were flushed to disk and its std map was saved, so a build killed at any
    moment redoes at most the camera in progress. Anything unexpected -> start over.
    """
    try:
        if json.loads((tmp / "build.json").read_text()) != plan:
            raise ValueError("different build")
        frames = np.load(tmp / "frames.npy", mmap_mode="r+")
        if frames.shape != shape or frames.dtype != np.uint8:
            raise ValueError("different shape")
        done = {int(p.name) for p in (tmp / "done").iterdir() if p.name.isdigit()}
        done = {k for k in done if k < shape[0] and (tmp / f"std_{k:04d}.npy").is_file()}
        return frames, done
    except (OSError, ValueError, EOFError):
        pass
    shutil.rmtree(tmp, ignore_errors=True)
    _check_free_space(tmp.parent, int(np.prod(shape)))
    (tmp / "done").mkdir(parents=True)
    write_text(tmp / "build.json", json.dumps(plan))
    frames = np.lib.format.open_memmap(tmp / "frames.npy", mode="w+", dtype=np.uint8, shape=shape)
    _reserve(tmp / "frames.npy")
    return frames, set()


def _check_free_space(folder: Path, nbytes: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < nbytes * 1.01 + 2 ** 20:
        raise UserError(f"{folder}: the frame cache needs {nbytes / 2 ** 30:.1f} GiB but only "
                        f"{free / 2 ** 30:.1f} GiB are free on that disk")


def _reserve(path: Path) -> None:
    """Allocate the sparse memmap's blocks now: a full disk fails here, not as SIGBUS mid-write."""
    if not hasattr(os, "posix_fallocate"):
        return
    with open(path, "r+b") as fh:
        try:
            os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise UserError(f"{path}: disk full while reserving the frame cache") from None


def _cache_camera(frames: np.memmap, tmp: Path, ci: int, cam_files, hw, source_hw, blur_kernel: int,
                  bar) -> None:
    """Decode one camera into ``frames[ci]`` (every frame must be source_hw), save its std, median and mode
    maps, mark it finished."""
    cam = np.empty((*hw, len(cam_files), 3), dtype=np.uint8)
    moments = TemporalMoments(hw)
    for ti, path in enumerate(cam_files):
        img = read_frame(path, hw, source_hw)
        cam[:, :, ti] = img
        moments.add(img)
        bar.update(1)
    frames[ci] = cam
    frames.flush()  # msync: the camera's pixels are on disk before its marker
    save_npy(tmp / f"std_{ci:04d}.npy", moments.std(blur_kernel))
    median = temporal_median(cam)
    save_npy(tmp / f"median_{ci:04d}.npy", median)
    save_npy(tmp / f"mode_{ci:04d}.npy", temporal_mode(cam, median))
    write_text(tmp / "done" / str(ci), "")


def build_cache(datadir: Path, src: FrameSource, downsample: float, blur_kernel: int) -> Path:
    """Build (or reuse) the cache for ``src``; returns its directory.

    Streams camera by camera (one camera's uint8 frames in memory at a time) into the temp dir
    ``cache/.tmp-<key>``; an interrupted build continues from its finished cameras. The temp dir
    is renamed to ``cache/<key>`` only when complete, so a partial cache is never trusted.
    """
    key = cache_key(src, downsample, blur_kernel)
    root = SceneDir(datadir).cache
    final = root / key
    shape = (len(src.files), *target_size(src.hw, downsample), len(src.files[0]), 3)
    if _cache_intact(final, shape):
        return final
    try:
        return _build(datadir, src, downsample, blur_kernel, key, shape)
    except OSError as exc:
        raise write_error(root, exc) from None


def _cache_intact(final: Path, shape: tuple[int, ...]) -> bool:
    """True when ``final`` holds a complete cache of ``shape``; a damaged one is removed (it is rebuilt)."""
    if not (final / "meta.json").is_file():
        return False
    try:
        frames = np.load(final / "frames.npy", mmap_mode="r")
        std = np.load(final / "std.npy", mmap_mode="r")
        colours = [np.load(final / f"{name}.npy", mmap_mode="r") for name in COLOUR_MAPS]
        json.loads((final / "meta.json").read_text())
        if frames.shape == shape and frames.dtype == np.uint8 and std.shape == shape[:3] and \
                all(c.shape == (*shape[:3], 3) for c in colours):
            return True
    except (OSError, ValueError, EOFError):
        pass
    log.warning("%s: frame cache is damaged or incomplete; rebuilding it", final)
    shutil.rmtree(final, ignore_errors=True)
    return False


def _build(datadir: Path, src: FrameSource, downsample: float, blur_kernel: int, key: str,
           shape: tuple[int, ...]) -> Path:
    root = datadir / "cache"
    final = root / key
    root.mkdir(parents=True, exist_ok=True)
    with _build_lock(root / f".lock-{key}"):
        if _cache_intact(final, shape):  # another process finished it while we waited
            return final
        k, hw, t = shape[0], shape[1:3], shape[3]
        tmp = root / f".tmp-{key}"
        plan = {"version": CACHE_VERSION, "key": key, "shape": list(shape)}
        frames, done = _open_partial_build(tmp, plan, shape)
        if done:
            log.info("continuing an interrupted cache build: %d of %d cameras already done", len(done), k)
        with tqdm(total=k * t, initial=len(done) * t, desc="caching frames", unit="frame",
                  dynamic_ncols=True) as bar:
            for ci, cam_files in enumerate(src.files):
                if ci not in done:
                    bar.set_postfix(cam=src.cam_names[ci])
                    _cache_camera(frames, tmp, ci, cam_files, hw, src.hw, blur_kernel, bar)
        del frames
        std = np.stack([np.load(tmp / f"std_{ci:04d}.npy") for ci in range(k)])
        save_npy(tmp / "std.npy", std)
        for name in COLOUR_MAPS:
            save_npy(tmp / f"{name}.npy", np.stack([np.load(tmp / f"{name}_{ci:04d}.npy") for ci in range(k)]))
        meta = {"version": CACHE_VERSION, "cam_names": list(src.cam_names), "hw": list(hw),
                "source_hw": list(src.hw), "n_frames": t, "downsample": downsample, "blur_kernel": blur_kernel}
        write_text(tmp / "meta.json", json.dumps(meta, indent=1))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    (root / f".lock-{key}").unlink(missing_ok=True)
    log.info("frame cache written to %s", final)
    _remove_old_versions(root)
    return final


def _remove_old_versions(root: Path) -> None:
    """Delete the complete caches under ``root`` written by an older CACHE_VERSION (no key reaches them)."""
    for meta in root.glob("[!.]*/meta.json"):
        try:
            old = json.loads(meta.read_text()).get("version") != CACHE_VERSION
        except (OSError, ValueError):
            continue
        if old:
            log.info("removing %s: a frame cache of an older format", meta.parent)
            shutil.rmtree(meta.parent, ignore_errors=True)


@dataclass
class FrameCache:
    """Loaded cache. frames: uint8 [K, H, W, T, 3] (memory-mapped); std: float32 [K, H, W]; median, mode:
    uint8 [K, H, W, 3]."""

    frames: np.ndarray
    std: np.ndarray
    median: np.ndarray
    mode: np.ndarray
    meta: dict

    @staticmethod
    def open(path: Path, in_memory_limit: int = 2 ** 30) -> FrameCache:
        frames = np.load(path / "frames.npy", mmap_mode="r")
        if frames.nbytes <= in_memory_limit:
            frames = np.ascontiguousarray(frames)
        colours = (np.load(path / f"{name}.npy") for name in COLOUR_MAPS)
        return FrameCache(frames, np.load(path / "std.npy"), *colours, json.loads((path / "meta.json").read_text()))

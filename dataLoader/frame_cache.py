"""Derived per-scene data, built once into ``<scene>/cache/<key>/`` (SPEC §3).

Contents of a cache directory:
  frames.npy   uint8 [K, H, W, T, 3]  resized frames, pixel-major so a ray's T colours are contiguous
  std.npy      float32 [K, H, W]      blurred per-pixel temporal std (mean over channels), in [0, 1] units
  meta.json    camera names, sizes, frame range, the key's inputs

The key hashes every parameter that shaped the data (downsample, frame range, blur, the
source files' names, sizes and mtimes). A cache is built camera by camera into a temp
directory and renamed into place, so an interrupted build is never trusted.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
from tqdm import tqdm

from dataLoader.errors import UserError

log = logging.getLogger(__name__)
CACHE_VERSION = 1
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class FrameSource:
    """Validated frame files of a scene: files[k][t] for camera k, frame t."""

    cam_names: tuple[str, ...]
    files: tuple[tuple[Path, ...], ...]
    hw: tuple[int, int]


def list_cameras(datadir: Path) -> list[Path]:
    frames = datadir / "frames"
    if not frames.is_dir():
        raise UserError(f"{frames}: no frames folder (run tools/prepare_video.py on the videos first)")
    cams = sorted(p for p in frames.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not cams:
        raise UserError(f"{frames}: no camera folders")
    return cams


def _image_size(path: Path) -> tuple[int, int]:
    try:
        props = iio.improps(path)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad file
        raise UserError(f"{path}: unreadable image ({exc})") from None
    return int(props.shape[0]), int(props.shape[1])


def scan_frames(datadir: Path, frame_start: int = 0, n_frames: int = -1) -> FrameSource:
    """Validate ``frames/camXX/*`` and select [frame_start, frame_start + n_frames) of every camera."""
    cams = list_cameras(datadir)
    all_files = [sorted(p for p in c.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) for c in cams]
    counts = {c.name: len(f) for c, f in zip(cams, all_files)}
    if len(set(counts.values())) != 1:
        raise UserError(f"{datadir / 'frames'}: cameras have different frame counts {counts}")
    total = next(iter(counts.values()))
    if total == 0:
        raise UserError(f"{datadir / 'frames'}: camera folders hold no images")
    end = total if n_frames < 0 else frame_start + n_frames
    if frame_start < 0 or end > total or end <= frame_start:
        raise UserError(f"{datadir / 'frames'}: frame range [{frame_start}, {end}) is outside the "
                        f"{total} available frames")
    sizes = {c.name: _image_size(f[0]) for c, f in zip(cams, all_files)}
    if len(set(sizes.values())) != 1:
        raise UserError(f"{datadir / 'frames'}: cameras have different image sizes {sizes}")
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


def read_frame(path: Path, hw: tuple[int, int]) -> np.ndarray:
    """-> uint8 [H, W, 3] RGB resized to hw with area interpolation."""
    try:
        img = iio.imread(path)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{path}: unreadable image ({exc})") from None
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = (img.astype(np.float64) / np.iinfo(img.dtype).max * 255).round().astype(np.uint8)
    if img.shape[:2] != hw:
        img = cv2.resize(img, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)
    return img


def temporal_std(frames: np.ndarray, blur_kernel: int) -> np.ndarray:
    """uint8 [H, W, T, 3] -> float32 [H, W]: std over time, mean over channels, Gaussian blur."""
    x = frames.astype(np.float32) / 255.0
    std = x.std(axis=2).mean(axis=-1)
    if blur_kernel > 1:
        std = cv2.GaussianBlur(std, (blur_kernel, blur_kernel), 0)
    return std.astype(np.float32)


def build_cache(datadir: Path, src: FrameSource, downsample: float, blur_kernel: int) -> Path:
    """Build (or reuse) the cache for ``src``; returns its directory."""
    key = cache_key(src, downsample, blur_kernel)
    final = datadir / "cache" / key
    if (final / "meta.json").is_file():
        return final
    hw = target_size(src.hw, downsample)
    tmp = datadir / "cache" / f".tmp-{key}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    k, t = len(src.files), len(src.files[0])
    frames = np.lib.format.open_memmap(tmp / "frames.npy", mode="w+", dtype=np.uint8, shape=(k, *hw, t, 3))
    std = np.zeros((k, *hw), dtype=np.float32)
    for ci, cam_files in enumerate(tqdm(src.files, desc="caching frames", unit="cam")):
        cam = np.empty((*hw, t, 3), dtype=np.uint8)
        for ti, path in enumerate(cam_files):
            cam[:, :, ti] = read_frame(path, hw)
        frames[ci] = cam
        std[ci] = temporal_std(cam, blur_kernel)
    frames.flush()
    del frames
    np.save(tmp / "std.npy", std)
    meta = {"version": CACHE_VERSION, "cam_names": list(src.cam_names), "hw": list(hw),
            "source_hw": list(src.hw), "n_frames": t, "downsample": downsample, "blur_kernel": blur_kernel}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    log.info("frame cache written to %s", final)
    return final


@dataclass
class FrameCache:
    """Loaded cache. frames: uint8 [K, H, W, T, 3] (memory-mapped); std: float32 [K, H, W]."""

    frames: np.ndarray
    std: np.ndarray
    meta: dict

    @staticmethod
    def open(path: Path, in_memory_limit: int = 2 ** 30) -> FrameCache:
        frames = np.load(path / "frames.npy", mmap_mode="r")
        if frames.nbytes <= in_memory_limit:
            frames = np.ascontiguousarray(frames)
        return FrameCache(frames, np.load(path / "std.npy"), json.loads((path / "meta.json").read_text()))

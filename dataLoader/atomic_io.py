"""The one way this toolkit writes files: atomically, and loudly when the disk says no.

Every writer goes through :func:`atomic_path`: the content is written to a temp file in the
target's own folder (``.<stem>.tmp-<pid>-<token><suffix>``), flushed and fsynced, then renamed
over the target, and the folder is fsynced. The parent folder is created when missing. On any
failure the temp file is removed and a previous file at the target is left byte-identical; an
``OSError`` (full disk, quota, read-only folder, a parent that is a file) becomes a one-line
:class:`UserError` naming the file. :func:`atomic_dir` does the same for a whole folder.

API (``path`` may be ``str`` or ``Path``; each returns nothing unless stated)::

    atomic_path(path)                       context manager -> temp Path to write; renamed on success
    atomic_dir(path, overwrite=False)       context manager -> temp folder; replaces ``path`` on success
    write_bytes(path, data)                 bytes
    write_text(path, text)                  str (UTF-8)
    write_json(path, obj, indent=1)         JSON
    save_npy(path, array)                   one array (.npy)
    save_npz(path, compressed=False, **a)   named arrays (.npz)
    save_torch(path, obj)                   torch.save
    write_png(path, img, compression=3)     uint8 [H, W, 3] RGB or [H, W] gray, lossless PNG
    write_video(path, frames, fps, quality) -> frames written; H.264 mp4 via imageio-ffmpeg, checked
"""
from __future__ import annotations

import errno
import io
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from core.errors import UserError

LOW_SPACE = 1 << 16  # free bytes below which an unexplained write error is reported as a full disk
_REASONS = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EROFS: "read-only file system",
            errno.EACCES: "permission denied", errno.EPERM: "permission denied",
            errno.ENOTDIR: "a parent is not a folder", errno.EEXIST: "a parent is not a folder"}


def write_error(path: Path, exc: OSError) -> UserError:
    """One-line UserError for a failed write of ``path`` (says whether a previous file survived)."""
    reason = _REASONS.get(exc.errno) or exc.strerror or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if exc.errno not in _REASONS and _free_bytes(Path(path)) < LOW_SPACE:  # e.g. ffmpeg's broken pipe
        reason = f"disk full? {reason}"
    kept = "; the previous file is intact" if Path(path).is_file() else ""
    return UserError(f"{path}: cannot write ({reason}){kept}")


def _free_bytes(path: Path) -> int:
    for folder in (path.parent, *path.parent.parents):
        try:
            return shutil.disk_usage(folder).free
        except OSError:
            continue
    return LOW_SPACE


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}-{secrets.token_hex(3)}{path.suffix}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temps(path: Path) -> None:
    """Temp files of ``path`` left by killed writers (their pid is gone)."""
    for tmp in path.parent.glob(f".{path.stem}.tmp-*"):
        pid = tmp.name[len(path.stem) + 6:].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    """fsync a file or folder (folders cannot be opened on some systems: skipped there)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
            raise
    finally:
        os.close(fd)


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(path, exc) from None
    if not path.parent.is_dir():
        raise UserError(f"{path}: cannot write (a parent is not a folder)")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; when the block succeeds it is fsynced and renamed to ``path``.

    The block writes the temp path by name (any library that takes a filename). On failure the
    temp file is removed, ``path`` is untouched, and an OSError becomes a UserError naming ``path``.
    """
    path = Path(path)
    _make_parent(path)
    _remove_stale_temps(path)
    tmp = _temp_name(path)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from None
        raise
    _fsync(path.parent)


@contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp folder beside ``path``; when the block succeeds it replaces ``path`` as a whole.

    An existing ``path`` is refused unless ``overwrite`` (checked before the block runs); it is
    removed only after the new folder is complete. On failure the temp folder is removed.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise UserError(f"{path}: exists; pass --overwrite 1 to replace it")
    _make_parent(path)
    _remove_stale_temps(path)
    tmp = _temp_name(path)
    try:
        tmp.mkdir()
        yield tmp
        old = path.with_name(f".{path.stem}.tmp-{os.getpid()}-old")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from None
        if isinstance(exc, UserError) and str(tmp) in str(exc):  # name the folder the user asked for
            raise UserError(str(exc).replace(str(tmp), str(path))) from None
        raise
    _fsync(path.parent)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj, indent: int | None = 1) -> None:
    write_text(path, json.dumps(obj, indent=indent) + "\n")


def save_npy(path: str | Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.asanyarray(array), allow_pickle=False)
    write_bytes(path, buf.getvalue())


def save_npz(path: str | Path, compressed: bool = False, **arrays) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        (np.savez_compressed if compressed else np.savez)(fh, **arrays)


def save_torch(path: str | Path, obj) -> None:
    import torch  # only the stages that save checkpoints pay for the import

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def write_png(path: str | Path, img: np.ndarray, compression: int = 3) -> None:
    """``img``: uint8 [H, W, 3] RGB or [H, W] gray."""
    import cv2

    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise TypeError(f"write_png expects uint8, got {img.dtype}")
    bgr = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:
        raise UserError(f"{path}: could not encode a {img.shape} image as PNG")
    write_bytes(path, buf.tobytes())


def _pad_even(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _encode(tmp: Path, frames: Iterable[np.ndarray], fps: float, quality: float) -> int:
    import imageio_ffmpeg

    writer, count = None, 0
    try:
        for frame in frames:
            frame = _pad_even(np.ascontiguousarray(frame, dtype=np.uint8))
            if writer is None:
                writer = imageio_ffmpeg.write_frames(str(tmp), (frame.shape[1], frame.shape[0]), fps=fps,
                                                     quality=quality, macro_block_size=1, pix_fmt_out="yuv420p",
                                                     ffmpeg_log_level="quiet")  # failures: checked below
                writer.send(None)
            writer.send(np.ascontiguousarray(frame))
            count += 1
    finally:
        if writer is not None:
            writer.close()
    return count


def _check_video(tmp: Path) -> None:
    """ffmpeg does not report a failed trailer write: the file must exist, be non-empty and parse."""
    import imageio_ffmpeg

    if not tmp.is_file() or tmp.stat().st_size == 0:
        raise OSError(errno.ENOSPC, "the encoder wrote an empty file (disk full?)")
    gen = imageio_ffmpeg.read_frames(str(tmp))
    try:
        next(gen)
    except (OSError, RuntimeError, StopIteration):
        raise OSError(errno.EIO, "the encoder wrote an unreadable file (disk full?)") from None
    finally:
        gen.close()


def write_video(path: str | Path, frames: Iterable[np.ndarray] | np.ndarray, fps: float = 30.0,
                quality: float = 9.0) -> int:
    """Encode frames (uint8 [T, H, W, 3] or an iterable of [H, W, 3]) as H.264 mp4; returns the count.

    ``quality`` is imageio-ffmpeg's 1..10 scale (9 ~ crf 5, visually lossless). Odd H or W are padded
    by one replicated row/column (yuv420p needs even sizes). No frames -> ValueError.
    """
    with atomic_path(path) as tmp:
        count = _encode(tmp, frames, fps, quality)
        if count == 0:
            raise ValueError(f"{path}: no frames to write")
        _check_video(tmp)
    return count

"""One preview PNG per camera beside an exported depth file (``static_model2depth.py``, ``colmap2depth.py``).

``<dir>/<stem>_<cam>.png`` next to ``<dir>/<stem>.npz``: the dense map and its mask, or the sparse
keypoints coloured by depth over the camera's image; colour bars in world units (:mod:`engine.panels`).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from core.errors import UserError
from dataLoader import colmap
from dataLoader.video_io import read_png
from engine.evaluation.visualize import save_png
from engine.panels import depth_map_preview, keypoint_preview


def preview_path(out: Path, cam: str) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}_{cam}.png")


def preview_pattern(out: Path) -> str:
    """How a summary line names the previews: ``<dir>/<stem>_<cam>.png``."""
    return str(preview_path(out, "<cam>"))


def save_dense_previews(out: Path, depth: np.ndarray, mask: np.ndarray, cam_names: list[str]) -> list[Path]:
    """depth [K, H, W] world-unit z, mask [K, H, W] bool -> one PNG per camera; returns their paths."""
    paths = []
    for k, cam in enumerate(cam_names):
        path = preview_path(out, cam)
        save_png(path, depth_map_preview(depth[k], mask[k], cam))
        paths.append(path)
    return paths


def dense_summary(out: Path, dense) -> str:
    """The stages' one-line report of a written dense depth file (a :class:`dataLoader.depth_files.DenseDepth`)."""
    h, w = dense.hw
    return (f"wrote {out}: {len(dense.cam_names)} cameras ({', '.join(dense.cam_names)}) {w}x{h}, depth on "
            f"{100 * dense.mask.mean():.0f}% of pixels; previews {preview_pattern(out)}")


def _camera_images(datadir: Path) -> dict[str, Path]:
    try:
        return dict(colmap.list_capture_images(datadir))
    except UserError:
        return {}


def save_keypoint_previews(out: Path, table: dict, names: list[str], hw: tuple[int, int], datadir: Path) -> list[Path]:
    """Keypoints of ``table`` (cam_index, x, y, depth [M]; pixel coords in hw) over each camera's first
    image in ``datadir`` (black where it has none) -> one PNG per camera with keypoints; returns the paths."""
    images = _camera_images(Path(datadir))
    h, w = int(hw[0]), int(hw[1])
    paths = []
    for k, cam in enumerate(names):
        sel = np.asarray(table["cam_index"]) == k
        if not sel.any():
            continue
        image = None
        if cam in images:
            image = cv2.resize(read_png(images[cam]), (w, h), interpolation=cv2.INTER_AREA)
        xy = np.stack([np.asarray(table["x"])[sel], np.asarray(table["y"])[sel]], -1)
        path = preview_path(out, cam)
        save_png(path, keypoint_preview(image, (h, w), xy, np.asarray(table["depth"])[sel], cam))
        paths.append(path)
    return paths

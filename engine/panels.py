"""Labelled picture panels: titled tiles with colour bars in physical units (uint8 RGB images out).

- :func:`frame_panel`: render | ground truth | error heat map (colour bar: mean |RGB error|, RGB in 0..1).
- :func:`depth_panel`: rendered depth (| ground-truth depth when there is one), colour bar in world units
  (colours follow 1/depth so near structure stays readable; the tick labels are depths).
- :func:`depth_map_preview`: an exported depth map | its validity mask.
- :func:`keypoint_preview`: sparse keypoints coloured by depth over the camera image.

Matplotlib's object API only (``Figure`` + ``FigureCanvasAgg``), never pyplot. Small images are
drawn enlarged (nearest neighbour) so that titles stay legible; large ones are drawn smaller.
"""
from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from engine.render.frames import disparity_range

TILE_PX = (240, 640)  # each tile is drawn between these widths (pixels)
DEPTH_CMAP = "turbo"
ERROR_CMAP = "inferno"
DEPTH_UNITS = "depth [world units]"


def _figure(n_tiles: int, h: int, w: int, bar: bool) -> tuple[Figure, list]:
    tile_w = int(np.clip(w, *TILE_PX))
    tile_h = tile_w * h / w
    width = n_tiles * tile_w + (100 if bar else 0)
    fig = Figure(figsize=(width / 100, (tile_h + 40) / 100), dpi=100)
    ratios = [1.0] * n_tiles + ([0.05] if bar else [])
    axes = fig.subplots(1, len(ratios), gridspec_kw={"width_ratios": ratios}, squeeze=False)[0]
    fig.subplots_adjust(left=0.01, right=1 - (60 if bar else 3) / width, top=1 - 30 / (tile_h + 40), bottom=0.02,
                        wspace=0.05)
    return fig, list(axes)


def _tile(ax, img, title: str, **kw):
    im = ax.imshow(img, interpolation="nearest", **kw)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    return im


def _to_image(fig: Figure) -> np.ndarray:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _disparity(depth: np.ndarray, mask=None) -> np.ma.MaskedArray:
    """depth [H, W] -> masked 1/depth (invalid: not finite, <= 0, or outside ``mask``)."""
    d = np.asarray(depth, np.float64)
    valid = np.isfinite(d) & (d > 0)
    if mask is not None:
        valid &= np.asarray(mask, bool)
    disp = np.zeros_like(d)
    disp[valid] = 1.0 / d[valid]
    return np.ma.masked_array(disp, ~valid)


def disparity_limits(*depths, percentiles=(1.0, 99.0)) -> tuple[float, float]:
    """One colour range (1/depth) for all given depth maps [H, W], from the first one with valid pixels."""
    for d in depths:
        limits = disparity_range(np.asarray(d, np.float64), percentiles)
        if limits is not None:
            return limits
    return 0.5, 1.0


def _depth_bar(fig: Figure, im, cax) -> None:
    bar = fig.colorbar(im, cax=cax)
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{1 / v:.3g}" if v > 0 else ""))
    bar.set_label(DEPTH_UNITS, fontsize=8)
    bar.ax.tick_params(labelsize=7)


def _cmap(name: str):
    return colormaps[name].with_extremes(bad="black")


def frame_panel(rgb: np.ndarray, gt: np.ndarray | None, vmax: float) -> np.ndarray:
    """rgb, gt [H, W, 3] float in [0, 1] (gt may be None) -> labelled uint8 image:
    render | ground truth | mean |RGB error| (colour bar 0..vmax, RGB on a 0..1 scale)."""
    rgb = np.clip(rgb, 0, 1)
    h, w = rgb.shape[:2]
    fig, axes = _figure(1 if gt is None else 3, h, w, bar=gt is not None)
    _tile(axes[0], rgb, "render")
    if gt is not None:
        _tile(axes[1], np.clip(gt, 0, 1), "ground truth")
        err = np.abs(rgb - gt).mean(-1)
        im = _tile(axes[2], err, "|error| (mean over RGB)", cmap=ERROR_CMAP, vmin=0, vmax=vmax)
        bar = fig.colorbar(im, cax=axes[3])
        bar.set_label("mean |RGB error| (RGB in 0..1)", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    return _to_image(fig)


def depth_panel(depth: np.ndarray, gt_depth: np.ndarray | None = None) -> np.ndarray:
    """depth [H, W] world-unit camera z (and the ground truth, when given) -> labelled uint8 image with one
    shared colour range and a colour bar in world units. Invalid pixels are black."""
    h, w = depth.shape
    tiles = [(depth, "rendered depth")] + ([(gt_depth, "ground-truth depth")] if gt_depth is not None else [])
    lo, hi = disparity_limits(*(d for d, _ in reversed(tiles)))
    fig, axes = _figure(len(tiles), h, w, bar=True)
    im = None
    for ax, (d, title) in zip(axes, tiles):
        im = _tile(ax, _disparity(d), title, cmap=_cmap(DEPTH_CMAP), norm=Normalize(lo, hi))
    _depth_bar(fig, im, axes[-1])
    return _to_image(fig)


def depth_map_preview(depth: np.ndarray, mask: np.ndarray, title: str) -> np.ndarray:
    """An exported depth map [H, W] and its mask [H, W] bool -> labelled uint8 image (depth where the mask
    holds, colour bar in world units | mask, white = supervised)."""
    h, w = depth.shape
    fig, axes = _figure(2, h, w, bar=True)
    lo, hi = disparity_limits(np.where(mask, depth, np.nan))
    im = _tile(axes[0], _disparity(depth, mask), f"{title}: depth", cmap=_cmap(DEPTH_CMAP), norm=Normalize(lo, hi))
    _tile(axes[1], np.asarray(mask, float), f"mask ({100 * np.mean(mask):.0f}% kept)", cmap="gray", vmin=0, vmax=1)
    _depth_bar(fig, im, axes[2])
    return _to_image(fig)


def keypoint_preview(image: np.ndarray | None, hw: tuple[int, int], xy: np.ndarray, depth: np.ndarray,
                     title: str) -> np.ndarray:
    """Keypoints xy [M, 2] (pixel coords, origin top-left) coloured by depth [M] over image [H, W, 3] uint8
    (black when None) -> labelled uint8 image with a colour bar in world units."""
    h, w = hw
    fig, axes = _figure(1, h, w, bar=True)
    _tile(axes[0], image if image is not None else np.zeros((h, w, 3), np.uint8), f"{title}: {len(depth)} keypoints",
          extent=(0, w, h, 0))  # pixel edges at integers, as the keypoint coordinates
    lo, hi = disparity_limits(np.asarray(depth, np.float64)[None])
    sc = axes[0].scatter(xy[:, 0], xy[:, 1], c=1.0 / np.asarray(depth, np.float64), s=6, cmap=DEPTH_CMAP,
                         norm=Normalize(lo, hi), edgecolors="white", linewidths=0.3)
    _depth_bar(fig, sc, axes[1])
    return _to_image(fig)

"""Pictures for evaluation: colourised depth, error heat maps, training curves, per-frame plots.

Uses matplotlib's object API (``Figure`` + ``FigureCanvasAgg``), never pyplot, so no global
backend or figure state is touched. Images are uint8 RGB [H,W,3].
"""

from __future__ import annotations

import logging

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dataLoader.atomic_io import atomic_path, write_png
from engine.evaluation.metrics import to_numpy

log = logging.getLogger(__name__)


def _apply_cmap(values: np.ndarray, name: str) -> np.ndarray:
    """values [H,W] in [0,1] -> uint8 [H,W,3] through a matplotlib colour map."""
    rgba = colormaps[name](np.clip(values, 0.0, 1.0))
    return (rgba[..., :3] * 255.0 + 0.5).astype(np.uint8)


def colorize_depth(depth, mask=None, vmin=None, vmax=None, inverse: bool = False,
                   percentiles=(1.0, 99.0), cmap: str = "turbo") -> np.ndarray:
    """depth [H,W] -> uint8 [H,W,3].

    Valid pixels are finite, > 0 and inside ``mask`` [H,W] (if given); the rest are black.
    With ``inverse`` the map shows 1/depth (disparity; near = warm), which reads better for
    forward-facing scenes. The range is [vmin, vmax] (in the displayed quantity, i.e. disparity
    when ``inverse``); a missing bound is the given percentile of the valid values.
    """
    d = to_numpy(depth).astype(np.float64)
    if d.ndim != 2:
        raise ValueError(f"colorize_depth: expected [H,W], got {d.shape}")
    valid = np.isfinite(d) & (d > 0)
    if mask is not None:
        valid &= to_numpy(mask).astype(bool).reshape(d.shape)
    out = np.zeros(d.shape + (3,), dtype=np.uint8)
    if not valid.any():
        return out
    v = np.zeros_like(d)
    v[valid] = 1.0 / d[valid] if inverse else d[valid]
    lo = np.percentile(v[valid], percentiles[0]) if vmin is None else float(vmin)
    hi = np.percentile(v[valid], percentiles[1]) if vmax is None else float(vmax)
    scaled = (v - lo) / max(hi - lo, 1e-12)
    if not inverse:
        scaled = 1.0 - scaled  # near = warm in both modes
    out[valid] = _apply_cmap(scaled, cmap)[valid]
    return out


def error_heatmap(pred, gt, vmax=None, cmap: str = "inferno") -> np.ndarray:
    """pred, gt [H,W,3] in [0,1] -> uint8 [H,W,3] heat map of the per-pixel mean absolute error.

    ``vmax`` fixes the error mapped to the brightest colour (use a constant, e.g. 0.1, to compare
    frames); None uses the 99th percentile of this image's error.
    """
    p, g = to_numpy(pred).astype(np.float64), to_numpy(gt).astype(np.float64)
    if p.shape != g.shape or p.ndim != 3:
        raise ValueError(f"error_heatmap: expected two equal [H,W,3], got {p.shape} and {g.shape}")
    err = np.abs(p - g).mean(axis=-1)
    top = float(np.percentile(err, 99)) if vmax is None else float(vmax)
    return _apply_cmap(err / max(top, 1e-12), cmap)


def _save_figure(fig: Figure, out_png) -> None:
    FigureCanvasAgg(fig)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=100)


def _plot_loss(ax, x, loss, terms: dict[str, np.ndarray]) -> None:
    if loss is not None:
        ax.plot(x, loss, lw=1.0, color="black", label="train loss")
        finite = loss[np.isfinite(loss)]
        if finite.size and np.all(finite > 0):
            ax.set_yscale("log")
    for name, values in terms.items():
        ax.plot(x, values, lw=0.7, alpha=0.8, label=name)
    ax.set_ylabel("loss")
    ax.grid(True, alpha=0.3)
    if terms:
        ax.legend(loc="upper right", fontsize=7)


def _loss_terms(history: dict, n: int) -> dict[str, np.ndarray]:
    """history["loss_terms"] (one {name: value} per log step) -> {name: [n]} with NaN where a term was absent;
    terms that are never positive (nothing to draw on a log axis) are left out."""
    rows = history.get("loss_terms") or []
    if len(rows) != n:
        return {}
    names = sorted({k for row in rows for k in row})
    out = {k: np.array([row.get(k, np.nan) for row in rows], dtype=np.float64) for k in names}
    return {k: v for k, v in out.items() if np.any(v > 0)}


def _plot_psnr(ax, x, psnr, test_x, test_psnr) -> None:
    if psnr is not None:
        ax.plot(x, psnr, lw=1.0, label="train PSNR")
    if test_psnr is not None and test_x is not None:
        ax.plot(test_x, test_psnr, "o-", ms=4, label="test PSNR")
    ax.set_ylabel("PSNR [dB]")
    ax.grid(True, alpha=0.3)
    if ax.has_data():
        ax.legend(loc="lower right", fontsize=8)


def _series(history: dict, key: str):
    """history[key] as float64 [N], or None when missing or empty (lists or arrays)."""
    v = history.get(key)
    if v is None or len(v) == 0:
        return None
    return np.asarray(v, dtype=np.float64)


def _test_axis(history: dict, it: np.ndarray, time_s):
    """Test points on the iteration axis and (interpolated if absent) on the time axis."""
    test_it = _series(history, "test_iteration")
    test_t = _series(history, "test_time_s")
    if test_t is None and test_it is not None and time_s is not None:
        test_t = np.interp(test_it, it, time_s)
    return test_it, test_t


def plot_training_curves(history: dict, out_png) -> None:
    """history {iteration [I], loss [I], optional time_s [I], psnr [I], loss_terms [I] ({name: value}),
    test_iteration [J], test_psnr [J], test_time_s [J]} -> PNG with loss and its terms (log) and PSNR vs
    iteration (top row) and,
    when ``time_s`` is present, the same vs wall-clock minutes (bottom row)."""
    it = np.asarray(history["iteration"], dtype=np.float64)
    time_s = _series(history, "time_s")
    loss = _series(history, "loss")
    terms = _loss_terms(history, len(it))
    psnr, test_psnr = _series(history, "psnr"), _series(history, "test_psnr")
    test_it, test_t = _test_axis(history, it, time_s)
    rows = [(it, test_it, "iteration")]
    if time_s is not None:
        rows.append((time_s / 60.0, None if test_t is None else test_t / 60.0, "wall-clock time [min]"))
    fig = Figure(figsize=(10, 3.5 * len(rows)))
    axes = fig.subplots(len(rows), 2, squeeze=False)
    for (x, test_x, xlabel), (ax_loss, ax_psnr) in zip(rows, axes):
        _plot_loss(ax_loss, x, loss, terms)
        _plot_psnr(ax_psnr, x, psnr, test_x, test_psnr)
        ax_loss.set_xlabel(xlabel)
        ax_psnr.set_xlabel(xlabel)
    fig.tight_layout()
    _save_figure(fig, out_png)


def plot_per_frame(values, out_png, ylabel: str, title: str | None = None) -> None:
    """values [T] -> PNG of value vs frame index with the mean as a dashed line."""
    v = to_numpy(values).astype(np.float64).reshape(-1)
    fig = Figure(figsize=(8, 3))
    ax = fig.subplots()
    ax.plot(np.arange(v.size), v, lw=1.0)
    finite = v[np.isfinite(v)]
    if finite.size:
        ax.axhline(finite.mean(), ls="--", color="gray", label=f"mean {finite.mean():.3f}")
        ax.legend(loc="best", fontsize=8)
    ax.set_xlabel("frame")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    _save_figure(fig, out_png)


def save_png(path, img) -> None:
    """img uint8 [H,W,3] RGB (or [H,W] grey) -> lossless PNG at ``path`` (parents created).

    Thin wrapper over ``dataLoader.atomic_io.write_png`` (the single PNG writer) that accepts
    tensors, validates the shape and creates the parent folder."""
    img = to_numpy(img)
    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise ValueError(f"save_png: expected uint8 [H,W,3] or [H,W], got {img.dtype} {img.shape}")
    write_png(path, img)

"""Plane-sweep stereo on a video rig's temporal medians: dense depth without a still capture.

Each training camera's temporal median (the frame cache's ``median.npy``: the background wherever movers
cover a pixel in fewer than half the frames) is matched against the other training cameras' medians over
``n_planes`` fronto-parallel planes, uniform in inverse depth over the camera's ``poses_bounds.npy`` range
widened by ``bound_margin``. The score of a plane is the windowed zero-mean normalized cross-correlation
(ZNCC) of the grey images, averaged over the ``top_k`` best neighbours (a point occluded in some views still
matches in others); the best plane is refined with a parabola through its neighbours' scores. A pixel keeps
its depth where that score reaches ``min_score``, its window has texture (grey variance >= ``min_texture``)
and no depth step (the kept depths in its window span at most ``max_step``: a window across an occlusion edge
matches the nearer surface). A second pass fills holes (:func:`fill_holes`): a textured pixel left out takes
its best plane within ``fill_planes`` of the depth spread from the kept pixels around it, if that plane scores
``fill_min_score``; a repeating texture (a brick wall seen over a wide baseline) scores several planes, and
the neighbourhood picks among them. Then the maps are checked against each other
(:mod:`engine.depth_consistency`) and only depth that ``min_agree`` neighbour cameras confirm within
``consistency_tol`` is kept. What survives is semi-dense (textured, visible, static surfaces) and accurate
to about a percent on the quality family (BENCHMARKS.md).

Conventions: grey [K, H, W] float in [0, 1]; c2w [K, 3, 4] world OpenGL cameras (x right, y up, looking
along -z); depth [H, W] world-unit camera z; pixel centres at +0.5 (:func:`dataLoader.rays.pixel_directions`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from dataLoader.depth_files import DenseDepth
from dataLoader.rays import pixel_directions
from engine.depth_consistency import ConsistencyReport, consistency, neighbours

log = logging.getLogger(__name__)

GREY = (0.299, 0.587, 0.114)
MIN_KEPT = 0.05  # a camera with depth on fewer of its pixels gets a warning


@dataclass(frozen=True)
class SweepOptions:
    """Plane-sweep and filtering settings (defaults chosen on the quality family, BENCHMARKS.md)."""

    n_planes: int = 96
    window: int = 7  # ZNCC window side (pixels, odd)
    top_k: int = 2  # a plane's score: the mean of the best top_k neighbours' ZNCC
    n_neighbours: int = 8  # neighbour cameras matched (the nearest training cameras)
    min_score: float = 0.7
    min_texture: float = 1e-4  # grey variance of the window below which a pixel has no depth
    bound_margin: float = 0.2  # planes span [near (1 - margin), far (1 + margin)]
    max_step: float = 0.1  # drop pixels whose window spans a relative depth step above this; 0 = off
    consistency_tol: float = 0.02
    min_agree: int = 2  # neighbour cameras that must confirm a pixel's depth
    plane_chunk: int = 8  # planes scored at once (memory)
    fill_planes: int = 3  # hole filling (fill_holes): search this many planes around the spread depth; 0 = off
    fill_min_score: float = 0.5  # least score of a filled pixel's plane


def to_grey(rgb: np.ndarray) -> torch.Tensor:
    """uint8 or float [K, H, W, 3] -> float32 grey [K, H, W] in [0, 1]."""
    rgb = np.asarray(rgb)
    x = torch.from_numpy(rgb).float()
    return (x / 255 if rgb.dtype == np.uint8 else x) @ torch.tensor(GREY)


def box_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    """[B, H, W] -> mean over the window around each pixel (the part inside the image)."""
    return F.avg_pool2d(x[:, None], window, 1, window // 2, count_include_pad=False)[:, 0]


def window_variance(x: torch.Tensor, window: int) -> torch.Tensor:
    """[B, H, W] -> variance over each pixel's window."""
    return box_mean(x * x, window) - box_mean(x, window) ** 2


def zncc(ref: torch.Tensor, other: torch.Tensor, window: int) -> torch.Tensor:
    """Windowed ZNCC of ref [H, W] with each of other [B, H, W] -> [B, H, W] in [-1, 1] (0 where either window
    is flat)."""
    cov = box_mean(ref * other, window) - box_mean(ref[None], window) * box_mean(other, window)
    var = window_variance(ref[None], window).clamp_min(1e-6) * window_variance(other, window).clamp_min(1e-6)
    return cov / var.sqrt()


def warp_planes(image: torch.Tensor, c2w_ref: torch.Tensor, c2w_src: torch.Tensor, focal: float,
                planes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The source camera's image [H, W] seen from the reference camera through each plane z = planes [D]
    (reference camera z) -> (warped [D, H, W], inside [D, H, W] bool: the point projects into the source)."""
    h, w = image.shape
    dirs = pixel_directions(h, w, focal).float().reshape(h, w, 3).to(image.device)
    pts = (dirs[None] * planes[:, None, None, None]) @ c2w_ref[:, :3].T + c2w_ref[:, 3]
    cam = (pts - c2w_src[:, 3]) @ c2w_src[:, :3]
    z = -cam[..., 2]
    x = focal * cam[..., 0] / z + w / 2
    y = -focal * cam[..., 1] / z + h / 2
    grid = torch.stack([x / w * 2 - 1, y / h * 2 - 1], -1)
    warped = F.grid_sample(image[None, None].expand(len(planes), 1, h, w), grid, align_corners=False)[:, 0]
    inside = (z > 0) & (x > 0) & (x < w) & (y > 0) & (y < h)
    return warped, inside


def best_plane(scores: torch.Tensor, inv_depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """scores [D, H, W] over planes at inverse depths inv_depth [D] (uniform) -> (depth [H, W] refined by a
    parabola through the best plane and its two neighbours, best score [H, W])."""
    n = len(inv_depth)
    best, idx = scores.max(0)
    i = idx.clamp(1, n - 2)
    lo, mid, hi = (scores.gather(0, (i + d)[None])[0] for d in (-1, 0, 1))
    curv = lo - 2 * mid + hi
    offset = torch.where(curv < -1e-6, 0.5 * (lo - hi) / curv, torch.zeros_like(curv)).clamp(-0.5, 0.5)
    return 1 / (inv_depth[i] + offset * (inv_depth[1] - inv_depth[0])), best


def sweep_camera(grey: torch.Tensor, c2w: torch.Tensor, focal: float, k: int, others: list[int],
                 bounds: tuple[float, float], opts: SweepOptions) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth [H, W] and mask [H, W] bool of camera k from its matches in cameras ``others``. Planes are scored
    ``plane_chunk`` at a time, so memory stays at a few [plane_chunk * len(others), H, W] buffers."""
    near, far = bounds
    inv = torch.linspace(1 / (near * (1 - opts.bound_margin)), 1 / (far * (1 + opts.bound_margin)), opts.n_planes,
                         device=grey.device)
    top = torch.empty(opts.n_planes, *grey.shape[1:], device=grey.device)
    for chunk in torch.arange(opts.n_planes, device=grey.device).split(opts.plane_chunk):
        scores = []
        for j in others:
            warped, inside = warp_planes(grey[j], c2w[k], c2w[j], focal, 1 / inv[chunk])
            scores.append(torch.where(inside, zncc(grey[k], warped, opts.window), -1.0))
        top[chunk] = torch.stack(scores).topk(min(opts.top_k, len(others)), dim=0).values.mean(0)
    depth, score = best_plane(top, inv)
    textured = window_variance(grey[k][None], opts.window)[0] >= opts.min_texture
    keep = check_steps(depth, (score >= opts.min_score) & textured, opts)
    if opts.fill_planes > 0:
        depth, keep = fill_holes(top, inv, depth, keep, textured, opts)
    return depth, keep


def check_steps(depth: torch.Tensor, keep: torch.Tensor, opts: SweepOptions) -> torch.Tensor:
    """keep [H, W] without the pixels next to a depth step (:func:`window_step`), if ``max_step`` is set."""
    return keep & (window_step(depth, keep, opts.window) <= opts.max_step) if opts.max_step > 0 else keep


def fill_holes(top: torch.Tensor, inv: torch.Tensor, depth: torch.Tensor, keep: torch.Tensor,
               textured: torch.Tensor, opts: SweepOptions) -> tuple[torch.Tensor, torch.Tensor]:
    """Second pass over a camera's plane scores top [P, H, W] (planes inv [P]): a textured pixel left out
    takes the best plane within ``fill_planes`` of the inverse depth spread from the kept pixels around it
    (:func:`spread`) if that plane scores ``fill_min_score``. A repeating texture has several good planes;
    the neighbourhood picks among them. -> depth, keep [H, W]."""
    prior, have = spread(torch.where(keep, 1 / depth, 0.0), keep)
    index = (prior - inv[0]) / (inv[1] - inv[0])
    near = (torch.arange(len(inv), device=top.device)[:, None, None] - index).abs() <= opts.fill_planes
    filled, score = best_plane(torch.where(near, top, -1.0), inv)
    new = ~keep & have & textured & (score >= opts.fill_min_score)
    depth = torch.where(new, filled, depth)
    return depth, check_steps(depth, keep | new, opts)


def spread(values: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """values [H, W] at valid pixels -> (every pixel's mean of the valid values in the smallest window, of
    side 3, 7, 15 ..., that holds one; reached [H, W] bool)."""
    out, reached = torch.where(valid, values, 0.0), valid.clone()
    w = valid.float()[None, None]
    side = 3
    while not bool(reached.all()) and side < 2 * max(values.shape):
        den = F.avg_pool2d(w, side, 1, side // 2, count_include_pad=False)[0, 0]
        num = F.avg_pool2d((values * valid)[None, None], side, 1, side // 2, count_include_pad=False)[0, 0]
        new = ~reached & (den > 0)
        out = torch.where(new, num / den.clamp_min(1e-12), out)
        reached |= new
        side = 2 * side + 1
    return out, reached


def window_step(depth: torch.Tensor, valid: torch.Tensor, window: int) -> torch.Tensor:
    """(max - min) / min of the valid depths [H, W] in each pixel's window (inf where none is valid): a window
    across an occlusion edge matches the nearer surface's texture, so depth next to a step is unreliable."""
    inf = torch.tensor(float("inf"), device=depth.device)
    hi = F.max_pool2d(torch.where(valid, depth, -inf)[None, None], window, 1, window // 2)[0, 0]
    lo = -F.max_pool2d(torch.where(valid, -depth, -inf)[None, None], window, 1, window // 2)[0, 0]
    return torch.where(valid, (hi - lo) / lo, inf)


def sweep_depth(grey: torch.Tensor, c2w: np.ndarray, bounds: np.ndarray, focal: float,
                opts: SweepOptions = SweepOptions()) -> tuple[np.ndarray, np.ndarray, ConsistencyReport]:
    """Plane-sweep depth of every camera of grey [K, H, W] (all of them matched against each other; the sweep
    runs on grey's device) -> depth [K, H, W] float32 (0 where none), mask [K, H, W] bool and the consistency
    report of the raw maps."""
    if len(grey) < 2:
        raise ValueError("plane sweep needs at least two cameras")
    c2w_t = torch.from_numpy(np.asarray(c2w, dtype=np.float32)).to(grey.device)
    depth, mask = [], []
    for k in tqdm(range(len(grey)), desc="plane sweep", unit="cam", leave=False):
        others = neighbours(np.asarray(c2w), k, opts.n_neighbours)
        d, m = sweep_camera(grey, c2w_t, focal, k, others, tuple(bounds[k]), opts)
        depth.append(d.cpu().numpy())
        mask.append(m.cpu().numpy())
    depth, mask = np.stack(depth).astype(np.float32), np.stack(mask)
    report = consistency(depth, mask, np.asarray(c2w, dtype=np.float64), focal, n_neighbours=opts.n_neighbours,
                         rel_tol=opts.consistency_tol, min_agree=opts.min_agree)
    keep = mask & report.mask
    return np.where(keep, depth, 0).astype(np.float32), keep, report


def video_depth(data, opts: SweepOptions = SweepOptions(), device="cpu") -> tuple[DenseDepth, ConsistencyReport]:
    """Plane-sweep maps of a :class:`dataLoader.dataset.VideoDataset`'s training cameras from their cached
    temporal medians (the test cameras' images are not used) -> the dense depth file's contents (weight 1
    where kept) and the consistency report of the raw maps. Logs per camera the fraction kept."""
    cams = data.train_idx
    names = [data.cam_names[k] for k in cams]
    depth, mask, report = sweep_depth(to_grey(data.cache.median[cams]).to(device), data.rig.c2w[cams],
                                      data.rig.bounds[cams], data.focal, opts)
    for name, m, err in zip(names, mask, report.error):
        (log.warning if m.mean() < MIN_KEPT else log.info)(
            "%s: depth on %.0f%% of pixels, median consistency error %.1f%%", name, 100 * m.mean(), 100 * err)
    dense = DenseDepth(depth, mask, mask.astype(np.float32), names, (data.h, data.w),
                       np.asarray(data.rig.c2w[cams], dtype=np.float64), data.normalization.to_dict())
    return dense, report

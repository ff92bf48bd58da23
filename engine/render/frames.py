"""Chunked rendering of cameras and camera paths with bounded memory, and video composition.

Memory: the model renders every ray for all T frames at once ([N, S, T] inside the model). Rays are
rendered in chunks whose working set fits a memory budget (:func:`chunk_size`, ``--render_budget_mb``;
default :data:`DEFAULT_BUDGET_MB` per device type) and image rows in blocks of about one chunk. A camera
video renders each ray once for all its frames; the float frames ([F, H*W] rgb + depth, float32) are kept
in RAM when they fit ``max_buffer_bytes`` and otherwise in a temporary memory-mapped file that is deleted
when the video has been consumed, so host memory stays bounded at N3DV size (1352x1014 x 300 frames:
6.6 GB of float frames on disk) without rendering any ray twice.

Depth is converted from the model's ray parameter to world-unit camera z (SPEC §4).
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dataLoader.atomic_io import write_png, write_video
from dataLoader.depth_space import ray_param_to_camera_z
from dataLoader.poses import SceneNormalization
from dataLoader.rays import PoseRays, pose_rays
from dataLoader.video_io import to_uint8
from engine.evaluation.visualize import colorize_depth
from engine.precision import Precision
from engine.render.camera_paths import CameraPath
from models.types import RayBatch

log = logging.getLogger(__name__)

MODES = ("rgb", "depth", "rgbd")
DEFAULT_BUFFER_BYTES = 1 << 30  # float frames of a camera video held in RAM (beyond: a temporary file)
# Render working set per chunk (``--render_budget_mb`` -1): a quarter of the device memory of a 24 GB GPU
# (also capped at half the free memory when rendering starts); on CPU 192 MiB (the earlier 2^22-element
# chunks): larger chunks leave the caches and render slower there (BENCHMARKS.md).
DEFAULT_BUDGET_MB = {"cuda": 6144, "cpu": 192}
# Estimated peak bytes per (ray, sample, frame) of a no-grad forward: the dynamic branch holds sigma, alpha,
# transmittance and weights [N, S, T] plus colours and weighted colours [N, S, T, 3] in float32.
BYTES_PER_SAMPLE_FRAME = 48


@dataclass(frozen=True)
class RenderSettings:
    """How to render: ``precision`` (autocast, None = float32) and the per-chunk memory ``budget_mb``
    (-1 = :data:`DEFAULT_BUDGET_MB` of the device type)."""

    precision: Precision | None = None
    budget_mb: float = -1


@dataclass
class CameraRender:
    """A camera's render. rgb: float32 [T, H, W, 3]; depth: float32 [T, H, W] world-unit camera z;
    static_rgb: [H, W, 3]; static_depth: [H, W] world-unit camera z; acc: [H, W]; dynamic: [H, W] bool."""

    rgb: np.ndarray
    depth: np.ndarray
    static_rgb: np.ndarray
    static_depth: np.ndarray
    acc: np.ndarray
    dynamic: np.ndarray


def model_frames(model) -> int:
    """T, the number of frames the model renders per ray (1 for a static model)."""
    return 1 if model.cfg.static_only else int(model.cfg.n_frames)


def budget_bytes(budget_mb: float, device) -> int:
    """A render budget in bytes; ``budget_mb`` <= 0 picks the device type's default (on CUDA at most half
    of the memory free now)."""
    device = torch.device(device)
    if budget_mb > 0:
        return int(budget_mb * 2 ** 20)
    default = DEFAULT_BUDGET_MB.get(device.type, DEFAULT_BUDGET_MB["cpu"]) * 2 ** 20
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(min(default, free // 2))
    return int(default)


def chunk_size(model, budget_mb: float = -1, device=None) -> int:
    """Rays per chunk so that rays x samples x frames x :data:`BYTES_PER_SAMPLE_FRAME` fits the budget."""
    device = model.aabb.device if device is None else device
    per_ray = model.n_samples * model_frames(model) * BYTES_PER_SAMPLE_FRAME
    return int(max(1, budget_bytes(budget_mb, device) // per_ray))


@torch.no_grad()
def render_rays(model, origins: torch.Tensor, dirs: torch.Tensor, device, chunk: int | None = None,
                frames: torch.Tensor | None = None, precision: Precision | None = None) -> dict:
    """Render [N, 3] rays in chunks -> dict of CPU tensors (rgb [N,F,3], depth [N,F], static_rgb [N,3],
    static_depth [N], acc [N], dynamic [N]); F = T, or len(frames) when ``frames`` [F] (long) selects
    frames on the device before anything is copied back. ``precision``: autocast of the model (default off)."""
    chunk = chunk or chunk_size(model, device=device)
    autocast = precision.autocast if precision is not None else contextlib.nullcontext
    parts: dict[str, list] = {k: [] for k in ("rgb", "depth", "static_rgb", "static_depth", "acc", "dynamic")}
    sel = None if frames is None else frames.to(device)
    for i in range(0, origins.shape[0], chunk):
        with autocast():
            out = model(RayBatch(origins[i:i + chunk].to(device), dirs[i:i + chunk].to(device)))
        rgb, depth = (out.rgb, out.depth) if sel is None else (out.rgb[:, sel], out.depth[:, sel])
        parts["rgb"].append(rgb.clamp(0, 1).cpu())
        parts["depth"].append(depth.cpu())
        parts["static_rgb"].append(out.static_rgb.clamp(0, 1).cpu())
        parts["static_depth"].append(out.static_depth.cpu())
        parts["acc"].append(out.acc.cpu())
        parts["dynamic"].append(out.dynamic_mask.cpu())
    return {k: torch.cat(v) for k, v in parts.items()}


def _to_camera_z(t: torch.Tensor, rays: PoseRays, sl: slice, norm: SceneNormalization) -> torch.Tensor:
    """Ray parameter [n] or [n, F] of rays[sl] -> world-unit camera z, float32."""
    return ray_param_to_camera_z(t.double(), rays.cam_o[sl], rays.cam_d[sl], norm).float()


def render_pose(model, c2w_norm: np.ndarray, h: int, w: int, focal: float, norm: SceneNormalization,
                device, settings: RenderSettings | None = None) -> CameraRender:
    """Render one normalized camera pose [3, 4] at h x w with the given focal (pixels), all T frames."""
    settings = settings or RenderSettings()
    rays = pose_rays(c2w_norm, h, w, focal, norm)
    out = render_rays(model, rays.origins, rays.dirs, device, chunk_size(model, settings.budget_mb, device),
                      precision=settings.precision)
    every = slice(None)
    z = _to_camera_z(out["depth"], rays, every, norm)
    zs = _to_camera_z(out["static_depth"], rays, every, norm)
    n_t = out["rgb"].shape[1]
    return CameraRender(
        rgb=out["rgb"].view(h, w, n_t, 3).permute(2, 0, 1, 3).numpy(),
        depth=z.view(h, w, n_t).permute(2, 0, 1).numpy(),
        static_rgb=out["static_rgb"].view(h, w, 3).numpy(),
        static_depth=zs.view(h, w).numpy(),
        acc=out["acc"].view(h, w).numpy(),
        dynamic=out["dynamic"].view(h, w).numpy(),
    )


@contextlib.contextmanager
def frame_store(n_frames: int, n_pixels: int, max_buffer_bytes: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Float32 rgb [F, P, 3] and depth [F, P] arrays: in RAM when they fit ``max_buffer_bytes``, else
    memory-mapped in a temporary folder removed on exit."""
    if n_frames * n_pixels * 16 <= max_buffer_bytes:
        yield np.empty((n_frames, n_pixels, 3), np.float32), np.empty((n_frames, n_pixels), np.float32)
        return
    with tempfile.TemporaryDirectory(prefix="mixvoxels-render-") as tmp:
        rgb = np.lib.format.open_memmap(Path(tmp) / "rgb.npy", "w+", np.float32, (n_frames, n_pixels, 3))
        depth = np.lib.format.open_memmap(Path(tmp) / "depth.npy", "w+", np.float32, (n_frames, n_pixels))
        try:
            yield rgb, depth
        finally:
            del rgb, depth


def iter_camera_frames(model, c2w_norm: np.ndarray, h: int, w: int, focal: float, norm: SceneNormalization,
                       device, frames: Sequence[int], max_buffer_bytes: int = DEFAULT_BUFFER_BYTES,
                       progress: bool = True, statics: dict | None = None, settings: RenderSettings | None = None
                       ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (t, rgb float32 [H, W, 3], depth float32 [H, W] world-unit z) for each t in ``frames``.

    Every ray is rendered once for all selected frames, in row blocks of about one ray chunk; the float
    frames wait in :func:`frame_store` (RAM up to ``max_buffer_bytes``, else a temporary file). ``statics``,
    when given, receives the frame-independent maps: "static_rgb" float32 [H, W, 3], "dynamic" bool [H, W]."""
    settings = settings or RenderSettings()
    frames = list(frames)
    rays = pose_rays(c2w_norm, h, w, focal, norm)
    chunk = chunk_size(model, settings.budget_mb, device)
    rows = max(1, chunk // w)
    blocks = [slice(r * w, min(r + rows, h) * w) for r in range(0, h, rows)]
    idx = torch.as_tensor([t if model_frames(model) > 1 else 0 for t in frames], dtype=torch.long)
    static_rgb, dynamic = np.empty((h * w, 3), np.float32), np.empty(h * w, bool)
    with frame_store(len(frames), h * w, max_buffer_bytes) as (rgb, depth):
        for sl in tqdm(blocks, desc="render", unit="block", disable=not progress, leave=False):
            out = render_rays(model, rays.origins[sl], rays.dirs[sl], device, chunk, frames=idx,
                              precision=settings.precision)
            rgb[:, sl] = out["rgb"].numpy().transpose(1, 0, 2)
            depth[:, sl] = _to_camera_z(out["depth"], rays, sl, norm).numpy().T
            static_rgb[sl], dynamic[sl] = out["static_rgb"].numpy(), out["dynamic"].numpy()
        if statics is not None:
            statics.update(static_rgb=static_rgb.reshape(h, w, 3), dynamic=dynamic.reshape(h, w))
        for j, t in enumerate(frames):
            yield t, np.array(rgb[j]).reshape(h, w, 3), np.array(depth[j]).reshape(h, w)


def iter_path_frames(model, path: CameraPath, h: int, w: int, focal: float, norm: SceneNormalization,
                     device, progress: bool = True, settings: RenderSettings | None = None
                     ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (i, rgb float32 [H, W, 3], depth float32 [H, W]) for pose i of ``path`` at time path.times[i].

    The model renders all T frames of each ray and frame times[i] is kept: T-fold work per pose,
    fine on a CPU at demo sizes (T = 20), the price of MixVoxels' all-frames time heads."""
    settings = settings or RenderSettings()
    n_t = model_frames(model)
    chunk = chunk_size(model, settings.budget_mb, device)
    for i in tqdm(range(len(path)), desc="path", unit="pose", disable=not progress, leave=False):
        rays = pose_rays(path.c2w[i], h, w, focal, norm)
        idx = torch.as_tensor([int(path.times[i]) if n_t > 1 else 0], dtype=torch.long)
        out = render_rays(model, rays.origins, rays.dirs, device, chunk, frames=idx,
                          precision=settings.precision)
        z = _to_camera_z(out["depth"][:, 0], rays, slice(None), norm)
        yield i, out["rgb"][:, 0].reshape(h, w, 3).numpy(), z.reshape(h, w).numpy()


# ------------------------------------------------------------------ video composition
def disparity_range(depth: np.ndarray, percentiles=(1.0, 99.0)) -> tuple[float, float] | None:
    """Fixed colour range (1/depth percentiles) for a whole video, from one frame's depth [H, W]."""
    valid = np.isfinite(depth) & (depth > 0)
    if not valid.any():
        return None
    disp = 1.0 / depth[valid]
    lo, hi = np.percentile(disp, percentiles)
    return float(lo), float(max(hi, lo + 1e-9))


def compose_frame(rgb: np.ndarray, depth: np.ndarray, mode: str, drange) -> np.ndarray:
    """rgb [H, W, 3] float, depth [H, W] -> uint8 [H, W, 3] (rgb, depth) or [H, 2W, 3] (rgbd)."""
    parts = []
    if mode in ("rgb", "rgbd"):
        parts.append(to_uint8(rgb))
    if mode in ("depth", "rgbd"):
        lo, hi = drange if drange is not None else (None, None)
        parts.append(colorize_depth(depth, vmin=lo, vmax=hi, inverse=True))
    return np.concatenate(parts, axis=1)


def write_render_video(frames: Iterable[tuple[int, np.ndarray, np.ndarray]], out_path: Path, mode: str,
                       fps: float, png_dir: Path | None = None) -> int:
    """Stream rendered (index, rgb, depth) frames into an mp4 (and PNGs ``png_dir/NNNN.png``).

    The depth colour range is fixed from the first frame so the video does not flicker.
    Returns the number of frames written."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    state: dict = {}

    def composed() -> Iterator[np.ndarray]:
        for i, rgb, depth in frames:
            if "range" not in state:
                state["range"] = disparity_range(depth)
            img = compose_frame(rgb, depth, mode, state["range"])
            if png_dir is not None:
                write_png(png_dir / f"{i:04d}.png", img)
            yield img

    if png_dir is not None:
        png_dir.mkdir(parents=True, exist_ok=True)
    return write_video(out_path, composed(), fps=fps)

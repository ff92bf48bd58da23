"""Chunked rendering of cameras and camera paths with bounded memory, and video composition.

Memory: the model renders every ray for all T frames at once ([N, S, T] inside the model), so
rays are rendered in chunks of :func:`chunk_size` rays, image rows in blocks of about one chunk,
and video frames in chunks whose float output ([F, H, W, 4] float32) fits ``max_buffer_bytes``.
Only the frames being written are kept: a 300-frame N3DV camera never needs 300 float frames.

Depth is converted from the model's ray parameter to world-unit camera z (SPEC §4).
"""
from __future__ import annotations

import logging
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
from engine.render.camera_paths import CameraPath
from models.types import RayBatch

log = logging.getLogger(__name__)

MODES = ("rgb", "depth", "rgbd")
DEFAULT_BUFFER_BYTES = 1 << 30  # float frames held at once while rendering a camera video


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


def chunk_size(model, budget: int = 2 ** 22) -> int:
    """Rays per chunk so that rays x samples x frames stays near ``budget`` elements."""
    per_ray = model.n_samples * model_frames(model)
    return int(max(64, min(16384, budget // per_ray)))


@torch.no_grad()
def render_rays(model, origins: torch.Tensor, dirs: torch.Tensor, device, chunk: int | None = None,
                frames: torch.Tensor | None = None) -> dict:
    """Render [N, 3] rays in chunks -> dict of CPU tensors (rgb [N,F,3], depth [N,F], static_rgb [N,3],
    static_depth [N], acc [N], dynamic [N]); F = T, or len(frames) when ``frames`` [F] (long) selects
    frames on the device before anything is copied back."""
    chunk = chunk or chunk_size(model)
    parts: dict[str, list] = {k: [] for k in ("rgb", "depth", "static_rgb", "static_depth", "acc", "dynamic")}
    sel = None if frames is None else frames.to(device)
    for i in range(0, origins.shape[0], chunk):
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
                device) -> CameraRender:
    """Render one normalized camera pose [3, 4] at h x w with the given focal (pixels), all T frames."""
    rays = pose_rays(c2w_norm, h, w, focal, norm)
    out = render_rays(model, rays.origins, rays.dirs, device)
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


def frame_chunks(frames: Sequence[int], h: int, w: int, max_buffer_bytes: int) -> list[list[int]]:
    """Split frame indices so that [F, H, W, 4] float32 (rgb + depth) stays under the budget."""
    per_frame = h * w * 4 * 4
    n = max(1, int(max_buffer_bytes // per_frame))
    return [list(frames[i:i + n]) for i in range(0, len(frames), n)]


def iter_camera_frames(model, c2w_norm: np.ndarray, h: int, w: int, focal: float, norm: SceneNormalization,
                       device, frames: Sequence[int], max_buffer_bytes: int = DEFAULT_BUFFER_BYTES,
                       progress: bool = True, statics: dict | None = None
                       ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (t, rgb float32 [H, W, 3], depth float32 [H, W] world-unit z) for each t in ``frames``.

    Rows are rendered in blocks of about one ray chunk; when the selected frames do not fit
    ``max_buffer_bytes`` they are split into frame chunks and every ray is rendered once per chunk
    (memory traded for time). ``statics``, when given, receives the frame-independent maps of the
    first chunk: "static_rgb" float32 [H, W, 3] and "dynamic" bool [H, W]."""
    rays = pose_rays(c2w_norm, h, w, focal, norm)
    rows = max(1, chunk_size(model) // w)
    blocks = [slice(r * w, min(r + rows, h) * w) for r in range(0, h, rows)]
    chunks = frame_chunks(frames, h, w, max_buffer_bytes)
    bar = tqdm(total=len(chunks) * len(blocks), desc="render", unit="block", disable=not progress, leave=False)
    with bar:
        for sel in chunks:
            rgb = np.empty((h * w, len(sel), 3), np.float32)
            depth = np.empty((h * w, len(sel)), np.float32)
            idx = torch.as_tensor([t if model_frames(model) > 1 else 0 for t in sel], dtype=torch.long)
            keep = statics is not None and not statics
            if keep:
                statics["static_rgb"] = np.empty((h * w, 3), np.float32)
                statics["dynamic"] = np.empty(h * w, bool)
            for sl in blocks:
                out = render_rays(model, rays.origins[sl], rays.dirs[sl], device, frames=idx)
                rgb[sl] = out["rgb"].numpy()
                depth[sl] = _to_camera_z(out["depth"], rays, sl, norm).numpy()
                if keep:
                    statics["static_rgb"][sl] = out["static_rgb"].numpy()
                    statics["dynamic"][sl] = out["dynamic"].numpy()
                bar.update()
            if keep:
                statics["static_rgb"] = statics["static_rgb"].reshape(h, w, 3)
                statics["dynamic"] = statics["dynamic"].reshape(h, w)
            for j, t in enumerate(sel):
                yield t, rgb[:, j].reshape(h, w, 3), depth[:, j].reshape(h, w)


def iter_path_frames(model, path: CameraPath, h: int, w: int, focal: float, norm: SceneNormalization,
                     device, progress: bool = True) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (i, rgb float32 [H, W, 3], depth float32 [H, W]) for pose i of ``path`` at time path.times[i].

    The model renders all T frames of each ray and frame times[i] is kept: T-fold work per pose,
    fine on a CPU at demo sizes (T = 20), the price of MixVoxels' all-frames time heads."""
    n_t = model_frames(model)
    for i in tqdm(range(len(path)), desc="path", unit="pose", disable=not progress, leave=False):
        rays = pose_rays(path.c2w[i], h, w, focal, norm)
        idx = torch.as_tensor([int(path.times[i]) if n_t > 1 else 0], dtype=torch.long)
        out = render_rays(model, rays.origins, rays.dirs, device, frames=idx)
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

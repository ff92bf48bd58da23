"""Static-model depth distillation (SPEC §5.1): static captures, static checkpoints, depth export.

- :func:`prepare_static_capture`: validates ``D/frames/camXX/<one image>`` + ``D/poses_bounds.npy``
  and builds the T = 1 frame cache under ``D/cache/<key>/`` (the one ``train.py --datadir D
  --static_only 1`` reads; nothing is written outside D, no per-frame copies).
- :func:`load_static_model`: a checkpoint, refused unless it is a static model (``static_only``).
- :func:`check_rig_in_static_world`: refuses video cameras outside the static capture's world
  (centres far outside the static cameras' region, view directions far from theirs).
- :func:`render_depth_maps`: depth at the video rig's cameras with the static checkpoint's
  normalization -> :class:`dataLoader.depth_files.DenseDepth` for ``depth/all_depth.npz``:
  ``depth [K, H, W]`` float32 world-unit camera z, ``mask [K, H, W]`` bool, ``weight [K, H, W]``
  (accumulated opacity, 0 outside the mask), camera names, (H, W), world c2w, normalization.

Depth per pixel is a quantile of the static termination distribution (default the median:
the ray parameter where the cumulative weight reaches half the accumulated opacity), converted
to world-unit camera z; ``stat="mean"`` gives Σ wᵢtᵢ / Σ wᵢ instead. The median is the default
because a few weak floaters near the camera drag the mean far forward in NDC (measured on the
synthetic scene: median relative error 4 % for the median vs 11 % for the mean).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core.errors import UserError
from dataLoader.depth_files import DenseDepth, save_dense_depth
from dataLoader.depth_space import ray_param_to_camera_z
from dataLoader.frame_cache import auto_blur_kernel, build_cache, scan_frames, target_size
from dataLoader.poses import CameraRig, SceneNormalization
from dataLoader.rays import pose_rays
from dataLoader.rig_geometry import mean_view_dir, view_angles_deg, view_spread_deg
from dataLoader.scene_files import frames_factor, load_scene_files, training_hw
from dataLoader.scene_layout import SceneDir
from engine.checkpoint import load_model
from engine.depth_consistency import consistency
from engine.render.frames import chunk_size
from models.types import RayBatch

log = logging.getLogger(__name__)
DEPTH_STATS = ("median", "mean")


# ----------------------------------------------------------------------------- static capture
@dataclass(frozen=True)
class StaticCapture:
    """A validated, cached static capture: K views of size hw (on disk) cached at cache_hw."""

    datadir: Path
    cam_names: tuple[str, ...]
    hw: tuple[int, int]
    cache_hw: tuple[int, int]
    cache_dir: Path


def prepare_static_capture(datadir: str | Path, downsample: float = 1.0) -> StaticCapture:
    """Validate a static capture and build its T = 1 training cache inside ``datadir``."""
    datadir = Path(datadir)
    names, hw, rig = SceneDir(datadir).validate_static_capture()
    if downsample <= 0:
        raise UserError(f"--downsample must be positive, got {downsample}")
    src = scan_frames(datadir)
    factor = frames_factor(rig, src.hw, float(downsample), SceneDir(datadir).frames)
    cache_hw = target_size(src.hw, factor)
    # the cache train.py --datadir D --static_only 1 opens: the same key (same files, size and blur)
    cache_dir = build_cache(datadir, src, factor, auto_blur_kernel(cache_hw[1]))
    return StaticCapture(datadir, tuple(names), hw, cache_hw, cache_dir)


# ----------------------------------------------------------------------------- checkpoints and worlds
def load_static_model(ckpt: str | Path, device="cpu"):
    """-> (model, normalization, state); refuses a checkpoint that is not a static model."""
    model, norm, state = load_model(ckpt, device)
    if not state["model_config"].get("static_only", False):
        raise UserError(f"{ckpt}: not a static model (trained with static_only 0); train one on the static "
                        f"capture with train.py --datadir STATIC --static_only 1")
    if not state.get("extra", {}).get("cameras"):
        raise UserError(f"{ckpt}: checkpoint holds no camera table (cannot check the rig's world)")
    return model, norm, state


def check_rig_in_static_world(rig_c2w_world: np.ndarray, names, norm: SceneNormalization,
                              static_c2w_norm: np.ndarray, source: str, centre_tol: float = 0.5,
                              angle_tol_deg: float = 25.0) -> None:
    """Refuse video cameras that cannot be in the static capture's world.

    In the static model's normalized world: every camera centre must lie within ``centre_tol``
    x (the static cameras' extent, at least the NDC near distance 1) of the static cameras'
    bounding box, and (NDC) in front of the near plane; every viewing direction within
    ``angle_tol_deg`` of the static cone (largest static angle to the static mean direction).
    """
    video = norm.apply(np.asarray(rig_c2w_world, dtype=np.float64))
    static = np.asarray(static_c2w_norm, dtype=np.float64)
    centres, lo, hi = video[:, :, 3], static[:, :, 3].min(0), static[:, :, 3].max(0)
    extent = max(float((hi - lo).max()), 1.0)
    outside = np.linalg.norm(np.maximum(lo - centres, 0) + np.maximum(centres - hi, 0), axis=-1) / extent
    mean_dir = mean_view_dir(static)
    cone = view_spread_deg(static)
    angles = view_angles_deg(video, mean_dir)
    for k, name in enumerate(names):
        if outside[k] > centre_tol or (norm.ndc and centres[k, 2] <= -0.9):
            raise UserError(f"{source}: camera {name} sits {outside[k]:.1f} static-capture widths outside the "
                            f"static cameras' region: its pose is not in the static model's world (register "
                            f"both captures in one SfM run, e.g. imgs2poses.py --static_dir)")
        if angles[k] > cone + angle_tol_deg:
            raise UserError(f"{source}: camera {name} looks {angles[k]:.0f} deg away from the static cameras' "
                            f"mean direction (they span {cone:.0f} deg): its pose is not in the static "
                            f"model's world")


# ----------------------------------------------------------------------------- rendering
def weight_quantile(weights: torch.Tensor, t: torch.Tensor, dt: torch.Tensor, q: float) -> torch.Tensor:
    """Ray parameter [N] where the normalized cumulative weight reaches ``q``.

    weights, t, dt: [N, S]; each sample's weight is spread uniformly over [t - dt/2, t + dt/2].
    """
    acc = weights.sum(-1, keepdim=True).clamp_min(1e-10)
    cdf = torch.cumsum(weights, -1) / acc
    i = torch.searchsorted(cdf.contiguous(), torch.full_like(acc, q)).clamp_max(t.shape[1] - 1)
    prev = torch.where(i > 0, cdf.gather(1, (i - 1).clamp_min(0)), torch.zeros_like(acc))
    frac = ((q - prev) / (cdf.gather(1, i) - prev).clamp_min(1e-10)).clamp(0, 1)
    return (t.gather(1, i) - 0.5 * dt.gather(1, i) + frac * dt.gather(1, i))[:, 0]


@torch.no_grad()
def render_static_depth(model, c2w_norm: np.ndarray, h: int, w: int, focal: float, norm: SceneNormalization,
                        device, stat: str = "median") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One camera -> (z [H, W] world-unit camera z, acc [H, W], relative spread [H, W]).

    spread = (z at cumulative weight 0.75 - z at 0.25) / z: how sharply the ray terminates.
    """
    if stat not in DEPTH_STATS:
        raise UserError(f"depth statistic must be one of {DEPTH_STATS}, got {stat!r}")
    rays = pose_rays(c2w_norm, h, w, focal, norm)
    origins, dirs = rays.origins, rays.dirs
    chunk = chunk_size(model)
    parts: dict[str, list] = {"t": [], "acc": [], "q25": [], "q75": []}
    for i in range(0, origins.shape[0], chunk):
        out = model(RayBatch(origins[i:i + chunk].to(device), dirs[i:i + chunk].to(device)))
        wts, tt, dt = out.weights.float(), out.t.float(), out.dt.float()
        acc = wts.sum(-1)
        mid = weight_quantile(wts, tt, dt, 0.5) if stat == "median" else (wts * tt).sum(-1) / acc.clamp_min(1e-10)
        for key, val in (("t", mid), ("acc", acc), ("q25", weight_quantile(wts, tt, dt, 0.25)),
                         ("q75", weight_quantile(wts, tt, dt, 0.75))):
            parts[key].append(val.cpu().double())
    res = {k: torch.cat(v) for k, v in parts.items()}

    def to_z(t):
        return ray_param_to_camera_z(t, rays.cam_o, rays.cam_d, norm).numpy().reshape(h, w)

    z = to_z(res["t"])
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = (to_z(res["q75"]) - to_z(res["q25"])) / z
    return z.astype(np.float32), res["acc"].numpy().reshape(h, w).astype(np.float32), spread.astype(np.float32)


@dataclass(frozen=True)
class ExportOptions:
    """How depth maps are rendered and masked."""

    stat: str = "median"
    acc_min: float = 0.5  # pixels whose static opacity is below this get no depth
    spread_max: float = 0.5  # ... or whose middle half of the termination spans more than this x z
    min_coverage: float = 0.1  # refuse when a camera has less than this fraction of valid pixels
    consistency_tol: float = 0.05  # relative depth disagreement with a neighbour camera still "agreeing"
    min_consistent: float = 0.5  # refuse when fewer of the valid pixels (mean over cameras) agree
    allow_inconsistent: bool = False  # export anyway (loud warning) instead of refusing


def render_depth_maps(model, norm: SceneNormalization, rig: CameraRig, cam_names, cam_idx: list[int],
                      hw: tuple[int, int], device, opts: ExportOptions = ExportOptions(),
                      source: str = "static model") -> DenseDepth:
    """Depth maps of ``rig`` cameras ``cam_idx`` (world poses) at image size hw with the static model."""
    h, w = hw
    focal = rig.hwf[2] * w / rig.hwf[1]
    c2w_norm = norm.apply(rig.c2w)
    names = [cam_names[k] for k in cam_idx]
    depth, mask, weight = [], [], []
    for k, name in zip(cam_idx, tqdm(names, desc="static depth", unit="cam", leave=False)):
        z, acc, spread = render_static_depth(model, c2w_norm[k], h, w, focal, norm, device, opts.stat)
        valid = np.isfinite(z) & (z > 0) & (acc >= opts.acc_min) & np.isfinite(spread) & (spread <= opts.spread_max)
        if valid.mean() < opts.min_coverage:
            raise UserError(f"{source}: the static model sees almost nothing at camera {name} "
                            f"({100 * valid.mean():.0f}% of pixels with depth): not the same scene or world")
        depth.append(np.where(valid, z, 0).astype(np.float32))
        mask.append(valid)
        weight.append(np.where(valid, np.clip(acc, 0, 1), 0).astype(np.float32))
        log.info("%s: depth on %.0f%% of pixels, median %.3g world units", name, 100 * valid.mean(),
                 float(np.median(z[valid])) if valid.any() else float("nan"))
    return DenseDepth(np.stack(depth), np.stack(mask), np.stack(weight), names, (h, w),
                      np.asarray(rig.c2w[cam_idx], dtype=np.float64), norm.to_dict())


def export_depth_file(ckpt: str | Path, datadir: str | Path, out: Path, cam_list: list[int] | None = None,
                      test_cams=(0,), downsample: float = 1.0, overwrite: bool = False, device="cpu",
                      opts: ExportOptions = ExportOptions(), exclude_cams: tuple[str, ...] = ()) -> DenseDepth:
    """Render the static checkpoint's depth at the video scene's cameras and write ``out`` atomically.

    cam_list: rows of the scene's ``poses_bounds.npy`` (default: every camera not in ``test_cams``).
    Maps are rendered at the video dataset's training size (the capture size divided by ``downsample``);
    cameras named in ``exclude_cams`` are dropped first, as training drops them.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"{out}: exists; pass --overwrite 1 to replace it")
    model, norm, state = load_static_model(ckpt, device)
    datadir = Path(datadir)
    poses = SceneDir(datadir).poses
    scene = load_scene_files(datadir, exclude=tuple(exclude_cams))
    rig, src = scene.rig, scene.src
    n = len(src.cam_names)
    cams = [k for k in range(n) if k not in set(test_cams)] if cam_list is None else list(cam_list)
    bad = [k for k in cams if not 0 <= k < n]
    if bad or not cams or len(set(cams)) != len(cams):
        raise UserError(f"camera list {cams} is invalid for {poses} ({n} cameras, indices 0..{n - 1})")
    check_rig_in_static_world(rig.c2w[cams], [src.cam_names[k] for k in cams], norm,
                              np.asarray(state["extra"]["cameras"]["c2w"]), str(poses))
    dense = render_depth_maps(model, norm, rig, src.cam_names, sorted(cams), training_hw(rig, downsample),
                              device, opts, source=f"{ckpt} at {poses}")
    dense = filter_consistent(dense, rig.hwf[2] * dense.hw[1] / rig.hwf[1], opts, str(ckpt))
    save_dense_depth(out, dense)
    return dense


def filter_consistent(dense: DenseDepth, focal: float, opts: ExportOptions, source: str) -> DenseDepth:
    """Keep only depth that agrees across the exported cameras (:mod:`engine.depth_consistency`).

    Logs per camera the fraction kept and the median consistency error; refuses (UserError) when the
    mean kept fraction is below ``opts.min_consistent`` unless ``opts.allow_inconsistent`` (then warns)."""
    if len(dense.cam_names) < 2:
        log.warning("%s: one camera only: depth not checked for multi-view consistency", source)
        return dense
    rep = consistency(dense.depth, dense.mask, dense.c2w, focal, rel_tol=opts.consistency_tol)
    for name, kept, err in zip(dense.cam_names, rep.kept, rep.error):
        log.info("%s: %.0f%% of depth pixels consistent with neighbour cameras, median error %.1f%%",
                 name, 100 * kept, 100 * err)
    mean_kept = float(rep.kept.mean())
    if mean_kept < opts.min_consistent:
        msg = (f"{source}: static depth is inconsistent across cameras (only {100 * mean_kept:.0f}% of pixels agree "
               f"within {100 * opts.consistency_tol:.0f}% with a neighbour camera; median error "
               f"{100 * float(np.nanmedian(rep.error)):.0f}%): the static model does not have the scene's geometry")
        if not opts.allow_inconsistent:
            raise UserError(msg + "; retrain it (more iterations/views) or pass --allow_inconsistent 1")
        log.warning("%s -- exporting anyway (--allow_inconsistent 1)", msg)
    mask = dense.mask & rep.mask
    return replace(dense, depth=np.where(mask, dense.depth, 0).astype(np.float32), mask=mask,
                   weight=np.where(mask, dense.weight, 0).astype(np.float32))


def report_held_out(ckpt: str | Path, min_psnr: float = 20.0) -> dict:
    """Held-out views' PSNR of the static run (its metrics.json next to the checkpoint), logged;
    a warning when no view was held out or when their PSNR is below ``min_psnr``. -> {cam: psnr}."""
    path = Path(ckpt).parent / "metrics.json"
    test = json.loads(path.read_text()).get("test", {}) if path.is_file() else {}
    psnr = {cam: float(m["psnr"]) for cam, m in test.items() if m.get("psnr") is not None}
    if not psnr:
        log.warning("%s: no held-out view of the static capture was scored: its geometry is unchecked on new "
                    "views (train the static model with --test_cams K)", ckpt)
    for cam, val in psnr.items():
        (log.warning if val < min_psnr else log.info)("static model, held-out view %s: PSNR %.2f dB", cam, val)
    return psnr

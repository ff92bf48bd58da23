"""Image, video and depth metrics computed on raw float renders.

Shape letters: T frames, H/W pixels. Colour inputs are float in [0, 1] (torch tensors or numpy
arrays; uint8 is accepted and divided by 255). Every metric uses a data range of 1.0.

Conventions:
- PSNR = -10 log10(MSE); "whole-video" PSNR takes the MSE over all T*H*W*3 values, which differs
  from the mean of per-frame PSNRs (Jensen). A perfect match gives ``inf``.
- SSIM is the Gaussian-window SSIM of Wang et al. (sigma 1.5, 11x11, K1 0.01, K2 0.03, population
  covariance), averaged over the valid (unpadded) window positions and over channels; it matches
  ``skimage.metrics.structural_similarity(channel_axis=-1, data_range=1.0, gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False)``.
- DSSIM is reported both ways: ``dssim1 = 1 - SSIM`` and ``dssim2 = (1 - SSIM) / 2`` (the latter is
  the one used by e.g. the Neural 3D Video / MixVoxels tables).
- A metric that cannot run is ``{"available": False, "reason": "..."}``, never 0.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # int(3.5 * sigma + 0.5), scikit-image's truncate=3.5 -> an 11x11 window
SSIM_K1, SSIM_K2 = 0.01, 0.03
FRAME_CHUNK = 8  # frames moved to the device at once


# ----------------------------------------------------------------------------- helpers
def to_numpy(x, dtype=None) -> np.ndarray:
    """A tensor (any device) or array-like -> numpy array (of ``dtype`` when given)."""
    return np.asarray(x.detach().cpu() if torch.is_tensor(x) else x, dtype=dtype)


def _as_tensor(x, device=None) -> torch.Tensor:
    """Any array-like -> detached float tensor in [0, 1] (uint8 is scaled by 1/255)."""
    if isinstance(x, np.ndarray):  # torch cannot wrap a read-only array (memmaps, broadcasts): copy those
        x = np.ascontiguousarray(x) if x.flags.writeable else np.array(x)
    t = torch.as_tensor(x).detach()
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    elif not t.is_floating_point():
        t = t.float()
    return t.to(device) if device is not None else t


def _check_pair(pred, gt, ndim: int, name: str) -> None:
    if tuple(pred.shape) != tuple(gt.shape) or len(pred.shape) != ndim or pred.shape[-1] != 3:
        raise ValueError(f"{name}: expected pred and gt of equal shape with {ndim} dims and 3 channels, "
                         f"got {tuple(pred.shape)} and {tuple(gt.shape)}")


def unavailable(reason: str) -> dict:
    """The record of a metric that could not run."""
    return {"available": False, "reason": reason}


# ----------------------------------------------------------------------------- PSNR
def psnr(mse: float) -> float:
    """PSNR in dB for a data range of 1: -10 log10(mse); ``inf`` when mse == 0."""
    mse = float(mse)
    return math.inf if mse <= 0.0 else -10.0 * math.log10(mse)


def per_frame_mse(pred, gt, device=None) -> np.ndarray:
    """pred, gt [T,H,W,3] -> MSE per frame [T] (float64), processed in frame chunks."""
    _check_pair(pred, gt, 4, "per_frame_mse")
    out = []
    for s in range(0, pred.shape[0], FRAME_CHUNK):
        p = _as_tensor(pred[s:s + FRAME_CHUNK], device)
        g = _as_tensor(gt[s:s + FRAME_CHUNK], p.device)
        diff = p.double() - g.double()
        out.append(diff.square().mean(dim=(1, 2, 3)).cpu())
    return torch.cat(out).numpy()


def per_frame_psnr(pred, gt, device=None) -> np.ndarray:
    """pred, gt [T,H,W,3] in [0,1] -> PSNR per frame [T] in dB."""
    return np.array([psnr(m) for m in per_frame_mse(pred, gt, device)])


def video_psnr(pred, gt, device=None) -> float:
    """pred, gt [T,H,W,3] in [0,1] -> PSNR of the MSE over the whole video (all frames equal size)."""
    return psnr(per_frame_mse(pred, gt, device).mean())


# ----------------------------------------------------------------------------- SSIM
def _gaussian_1d(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return k / k.sum()


def _blur_valid(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter without padding. x [B,C,H,W] -> [B,C,H-10,W-10]."""
    c = x.shape[1]
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def ssim_batch(pred: torch.Tensor, gt: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """pred, gt [B,H,W,3] tensors (same device) -> SSIM per image [B].

    Filtering with a 'valid' convolution equals scikit-image's reflect-padded filter cropped by the
    window radius, which is exactly the region scikit-image averages over. Filtering runs in float32 on
    CPU (about 1e-7 from scikit-image's float64, and 10x faster) and in float64 on CUDA, where cuDNN may
    run float32 convolutions in TF32 (10-bit mantissa, on by default): that moves SSIM by up to ~1e-2
    through the cancellation in E[x^2] - E[x]^2. The final mean is float64.
    """
    _check_pair(pred, gt, 4, "ssim_batch")
    if min(pred.shape[1:3]) < 2 * SSIM_RADIUS + 1:
        raise ValueError(f"ssim: images must be at least {2 * SSIM_RADIUS + 1} px, got {tuple(pred.shape)}")
    dtype = torch.float64 if pred.is_cuda else torch.float32  # no TF32 on CUDA (see above)
    x = pred.to(dtype).permute(0, 3, 1, 2)
    y = gt.to(dtype).permute(0, 3, 1, 2)
    k = _gaussian_1d(dtype, x.device)
    mu_x, mu_y = _blur_valid(x, k), _blur_valid(y, k)
    var_x = _blur_valid(x * x, k) - mu_x * mu_x
    var_y = _blur_valid(y * y, k) - mu_y * mu_y
    cov = _blur_valid(x * y, k) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return s.double().mean(dim=(1, 2, 3))


def ssim(pred, gt, data_range: float = 1.0) -> float:
    """pred, gt [H,W,3] in [0, data_range] -> SSIM (float)."""
    _check_pair(pred, gt, 3, "ssim")
    p = _as_tensor(pred)
    return float(ssim_batch(p[None], _as_tensor(gt, p.device)[None], data_range)[0])


def frame_mse_ssim(pred, gt, device=None) -> tuple[float, float]:
    """One frame pred, gt [H,W,3] -> (MSE, SSIM), both from a single copy of each image on the device."""
    _check_pair(pred, gt, 3, "frame_mse_ssim")
    p = _as_tensor(pred, device)[None]
    g = _as_tensor(gt, p.device)[None]
    return float((p.double() - g.double()).square().mean()), float(ssim_batch(p, g)[0])


def dssim(ssim_value: float) -> dict:
    """Both DSSIM conventions: dssim1 = 1 - SSIM, dssim2 = (1 - SSIM) / 2."""
    return {"dssim1": 1.0 - ssim_value, "dssim2": (1.0 - ssim_value) / 2.0}


def per_frame_ssim(pred, gt, frames, device=None) -> np.ndarray:
    """pred, gt [T,H,W,3]; frames [F] indices -> SSIM of those frames [F]."""
    out = []
    for s in range(0, len(frames), FRAME_CHUNK):
        idx = list(frames[s:s + FRAME_CHUNK])
        p = _as_tensor(pred[idx], device)
        out.append(ssim_batch(p, _as_tensor(gt[idx], p.device)).double().cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)


# ----------------------------------------------------------------------------- video summary
def video_summary(mse: np.ndarray, frame_ssim: np.ndarray, ssim_frames: np.ndarray) -> dict:
    """Per-frame MSE [T] and the SSIM [F] of frames ``ssim_frames`` [F] -> the video's metrics dict.

    Keys: psnr (whole video), psnr_per_frame_mean, ssim (mean over the SSIM frames), dssim1, dssim2,
    ssim_data_range, n_frames, and per_frame = {psnr [T], ssim [F], ssim_frames [F]} as numpy arrays.
    """
    frame_psnr = np.array([psnr(m) for m in mse])
    mean_ssim = float(np.mean(frame_ssim))
    return {
        "psnr": psnr(np.mean(mse)),
        "psnr_per_frame_mean": float(frame_psnr.mean()),
        "ssim": mean_ssim,
        **dssim(mean_ssim),
        "ssim_data_range": 1.0,
        "n_frames": int(len(mse)),
        "per_frame": {"psnr": frame_psnr, "ssim": np.asarray(frame_ssim), "ssim_frames": np.asarray(ssim_frames)},
    }


def evaluate_video(pred, gt, ssim_every: int = 1, device=None) -> dict:
    """pred, gt [T,H,W,3] in [0,1] -> :func:`video_summary` with SSIM on frames 0, k, 2k, ... (k = ssim_every)."""
    _check_pair(pred, gt, 4, "evaluate_video")
    ssim_frames = np.arange(0, pred.shape[0], max(int(ssim_every), 1))
    return video_summary(per_frame_mse(pred, gt, device), per_frame_ssim(pred, gt, ssim_frames, device), ssim_frames)


# ----------------------------------------------------------------------------- depth
def depth_sums(pred, gt, mask=None) -> np.ndarray:
    """pred, gt [...] depth of any equal shape (same units), mask [...] bool or None -> float64 [4]:
    n_valid, sum |pred - gt| / gt, sum (pred - gt)^2, count of max(pred/gt, gt/pred) < 1.25.

    Valid pixels: gt > 0, gt and pred finite, and mask; pred <= 0 counts as a delta miss. Sums of
    frames add up, so a video's metrics can be gathered frame by frame (:func:`depth_metrics_from_sums`).
    """
    p, g = to_numpy(pred, np.float64), to_numpy(gt, np.float64)
    if p.shape != g.shape:
        raise ValueError(f"depth_metrics: shapes differ {p.shape} vs {g.shape}")
    valid = np.isfinite(g) & np.isfinite(p) & (g > 0)
    if mask is not None:
        valid &= to_numpy(mask, bool).reshape(g.shape)
    p, g = p[valid], g[valid]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(p > 0, np.maximum(p / g, g / p), np.inf)
    return np.array([p.size, np.sum(np.abs(p - g) / g), np.sum((p - g) ** 2), np.sum(ratio < 1.25)], dtype=np.float64)


def depth_metrics_from_sums(sums: np.ndarray) -> dict:
    """:func:`depth_sums` [4] -> {abs_rel, rmse, delta_1_25, n_valid}, or ``unavailable`` with n_valid = 0."""
    n = int(sums[0])
    if n == 0:
        return {**unavailable("no valid ground-truth depth pixels"), "n_valid": 0}
    return {"abs_rel": float(sums[1] / n), "rmse": float(math.sqrt(sums[2] / n)), "delta_1_25": float(sums[3] / n),
            "n_valid": n}


def depth_metrics(pred, gt, mask=None) -> dict:
    """Depth metrics of pred vs gt (see :func:`depth_sums`): abs_rel = mean |pred - gt| / gt,
    rmse = sqrt(mean (pred - gt)^2), delta_1_25 = fraction with max(pred/gt, gt/pred) < 1.25, n_valid."""
    return depth_metrics_from_sums(depth_sums(pred, gt, mask))


# ----------------------------------------------------------------------------- optional metrics
# torchvision backbone weights lpips loads from the torch hub cache (TORCH_HOME/hub/checkpoints)
LPIPS_BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}


def _float_frames(x, start: int, stop: int) -> np.ndarray:
    """Frames [start:stop] of a [T,H,W,3] uint8 or float video as float32 in [0, 1] (converted on demand,
    so a long 8-bit video is never held in float)."""
    return _as_tensor(x[start:stop]).cpu().float().numpy()


def _lpips_net(lpips, net: str, pred, gt, device=None) -> dict:
    """Mean LPIPS over frames with one backbone, or unavailable when its weights are not on disk."""
    lin = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
    backbone = Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_BACKBONE_FILES[net]
    missing = [str(f) for f in (lin, backbone) if not f.is_file()]
    if missing:
        return unavailable(f"LPIPS-{net} weights not present locally (no download attempted): {missing}")
    device = torch.device(device or "cpu")  # the evaluation's device, never a GPU it was not given
    model = lpips.LPIPS(net=net, verbose=False).to(device).eval()
    vals = []
    with torch.no_grad():
        for s in range(0, pred.shape[0], FRAME_CHUNK):
            p = torch.as_tensor(_float_frames(pred, s, s + FRAME_CHUNK), device=device).permute(0, 3, 1, 2)
            g = torch.as_tensor(_float_frames(gt, s, s + FRAME_CHUNK), device=device).permute(0, 3, 1, 2)
            vals.append(model(p, g, normalize=True).flatten().double().cpu())
    return {"available": True, "value": float(torch.cat(vals).mean())}


def _lpips(pred, gt, fps: float, device=None) -> dict:
    """LPIPS-Alex as the value (the one MixVoxels' tables report) and LPIPS-VGG beside it."""
    import lpips  # optional dependency (needs a torchvision matching the installed torch)

    alex = _lpips_net(lpips, "alex", pred, gt, device)
    if not alex["available"]:
        return alex
    return {"available": True, "value": alex["value"], "net": "alex",
            "vgg": _lpips_net(lpips, "vgg", pred, gt, device)}


def _flip(pred, gt, fps: float, device=None) -> dict:
    import flip_evaluator  # optional dependency (pip package "flip-evaluator")

    # evaluate(reference, test, "LDR") -> (error_map [H,W], mean_error, parameters)
    vals = [float(flip_evaluator.evaluate(_float_frames(gt, t, t + 1)[0], _float_frames(pred, t, t + 1)[0], "LDR")[1])
            for t in range(len(pred))]
    return {"available": True, "value": float(np.mean(vals)), "mode": "LDR", "lower_is_better": True}


def _jod(pred, gt, fps: float, device=None) -> dict:
    import pyfvvdp  # optional dependency

    pred, gt = _float_frames(pred, 0, len(pred)), _float_frames(gt, 0, len(gt))  # one score for the whole clip
    display = "standard_4k"
    metric = pyfvvdp.fvvdp(display_name=display, heatmap=None)
    if pred.shape[0] == 1:
        q, _ = metric.predict(pred[0], gt[0], dim_order="HWC")
    else:
        q, _ = metric.predict(pred, gt, dim_order="FHWC", frames_per_second=float(fps))
    return {"available": True, "value": float(q), "display": display, "fps": float(fps)}


OPTIONAL_METRICS = {"lpips": _lpips, "flip": _flip, "jod": _jod}


def _run_optional(name: str, fn, pred, gt, fps: float, device=None) -> dict:
    try:
        return fn(pred, gt, fps, device)
    except ImportError as e:
        return unavailable(f"{name}: package not importable ({e})")
    except Exception as e:  # a failing optional metric must not abort evaluation
        log.warning("optional metric %s failed: %s", name, e)
        return unavailable(f"{name} failed: {type(e).__name__}: {e}")


def optional_metrics(pred, gt, fps: float = 30.0, names=tuple(OPTIONAL_METRICS), device=None) -> dict:
    """pred, gt [T,H,W,3] or [H,W,3], float in [0,1] or uint8 -> {name: record} for LPIPS, FLIP and JOD.

    Each record is {"available": True, "value": float, ...} or {"available": False, "reason": str}.
    LPIPS is the mean over frames (lower is better), FLIP the mean over frames of the mean LDR-FLIP
    error (lower is better), JOD one FovVideoVDP score for the whole clip at ``fps`` (higher is
    better, 10 = identical). Nothing is downloaded. LPIPS runs on ``device`` (default CPU).
    """
    if len(pred.shape) == 3:
        pred, gt = pred[None], gt[None]
    _check_pair(pred, gt, 4, "optional_metrics")
    return {n: _run_optional(n, OPTIONAL_METRICS[n], pred, gt, fps, device) for n in names}

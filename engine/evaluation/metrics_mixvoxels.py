"""SSIM as MixVoxels' published tables computed it, next to this toolkit's own SSIM.

MixVoxels called ``skimage.metrics.structural_similarity(gt, pred, multichannel=True)`` on float images
with no data range, so scikit-image of that time used: a 7x7 uniform window, sample covariance
(N / (N - 1)), data range 2 (the float dtype's [-1, 1]), K1 0.01, K2 0.03, mean over the unpadded window
positions and channels; on every 10th frame (0, 10, 20, ...); DSSIM = (1 - SSIM) / 2. In metrics.json
this is ``ssim_mixvoxels`` / ``dssim_mixvoxels``; ``ssim`` stays the Gaussian one (:mod:`engine.evaluation.metrics`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

WIN = 7
DATA_RANGE = 2.0
K1, K2 = 0.01, 0.03
EVERY = 10  # MixVoxels scores frames 0, 10, 20, ...


def ssim_mixvoxels(pred, gt) -> float:
    """pred, gt [H, W, 3] float in [0, 1] (tensors or arrays) -> SSIM with MixVoxels' settings (above)."""
    x = torch.as_tensor(pred).double().permute(2, 0, 1)[None]
    y = torch.as_tensor(gt).double().to(x.device).permute(2, 0, 1)[None]
    if x.shape != y.shape or min(x.shape[2:]) < WIN:
        raise ValueError(f"ssim_mixvoxels: need two equal images of at least {WIN} px, got "
                         f"{tuple(pred.shape)} and {tuple(gt.shape)}")

    def box(v: torch.Tensor) -> torch.Tensor:  # 'valid' positions = scikit-image's crop of its padded filter
        return F.avg_pool2d(v, WIN, stride=1)

    n = WIN * WIN
    cov_norm = n / (n - 1)
    mx, my = box(x), box(y)
    vx = cov_norm * (box(x * x) - mx * mx)
    vy = cov_norm * (box(y * y) - my * my)
    vxy = cov_norm * (box(x * y) - mx * my)
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


def summary(values: list[float], frames: list[int]) -> dict:
    """Per-frame MixVoxels SSIMs of ``frames`` -> the metrics.json fields."""
    mean = float(sum(values) / len(values))
    return {"ssim_mixvoxels": mean, "dssim_mixvoxels": (1.0 - mean) / 2.0, "ssim_mixvoxels_frames": list(frames)}

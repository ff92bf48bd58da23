"""The one line a training run logs when it starts: what it is about to train, on what."""
from __future__ import annotations

import numpy as np

from dataLoader.scene_files import capture_hw


def startup_line(cfg, device, data, model) -> str:
    """Device, trained image size (and the capture size it comes from), cameras, frames, ray mode,
    scene box and grid size, e.g. for the log and for anyone checking a run's resolution."""
    cap_h, cap_w = capture_hw(data.rig)
    test = [data.cam_names[k] for k in data.test_idx]
    excluded = f", excluded {list(data.excluded)}" if data.excluded else ""
    box = np.round(np.asarray(data.normalization.aabb, dtype=np.float64), 3).tolist()
    rays = "NDC (forward-facing)" if data.normalization.ndc else "bounded metric"
    return (f"training on {device}: {data.w}x{data.h} px (capture {cap_w}x{cap_h} / downsample "
            f"{cfg.downsample_train:g}), {len(data.cam_names)} cameras ({len(data.train_idx)} train, test "
            f"{test}{excluded}), {data.n_frames} frames, {rays} rays, scene box {box[0]} .. {box[1]}, "
            f"grid {'x'.join(str(r) for r in model.resolution)}, {cfg.n_iters} iterations")

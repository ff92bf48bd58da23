"""Time of ``video2depth``'s plane sweep per camera at several image sizes (one JSON line per size).

Four cameras 0.3 m apart look at a textured plane 4 m away (analytic images, no scene files); every camera
is swept against the other three with the default options (96 planes, 7x7 ZNCC), then the consistency
check runs. Reports seconds per camera, the peak resident memory and the fraction of pixels kept.
Usage: python -m bench.plane_sweep_speed [--sizes 128x96 256x192 512x384] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import numpy as np
import torch

from dataLoader.poses import look_at
from dataLoader.rays import pixel_directions
from engine.plane_sweep import sweep_depth


def plane_images(c2w: np.ndarray, hw: tuple[int, int], focal: float, z_plane: float) -> torch.Tensor:
    """Grey images [K, H, W] of the textured plane z = -z_plane (world) seen by cameras c2w [K, 3, 4] (looking along
    -z); the texture's periods are 7-16 pixels at any image size."""
    h, w = hw
    dirs = pixel_directions(h, w, focal).double().numpy()
    f = focal / z_plane  # pixels per world unit on the plane
    images = []
    for cam in c2w:
        d = dirs @ cam[:, :3].T
        x, y = (cam[:, 3] + ((-z_plane - cam[2, 3]) / d[:, 2])[:, None] * d)[:, :2].T
        tex = 0.5 + 0.2 * np.sin(0.55 * f * x) * np.cos(0.4 * f * y) + 0.15 * np.sin(0.9 * f * x + 0.7 * f * y)
        images.append(tex.reshape(h, w))
    return torch.from_numpy(np.stack(images)).float()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["128x96", "256x192", "512x384"])
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    c2w = np.stack([look_at((x, y, 0.0), (x, y, -1.0)) for x, y in [(-0.3, 0), (0, 0.1), (0.3, 0), (0, -0.2)]])
    bounds = np.tile([2.0, 8.0], (len(c2w), 1))
    for size in args.sizes:
        w, h = map(int, size.split("x"))
        grey = plane_images(c2w, (h, w), 0.8 * w, 4.0).to(args.device)
        t0 = time.perf_counter()
        _, mask, _ = sweep_depth(grey, c2w, bounds, 0.8 * w)
        seconds = time.perf_counter() - t0
        print(json.dumps({"bench": "plane_sweep", "size": [w, h], "cameras": len(c2w), "neighbours": len(c2w) - 1,
                          "seconds_per_camera": round(seconds / len(c2w), 2), "kept": round(float(mask.mean()), 3),
                          "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2),
                          "device": args.device, "cpu_threads": torch.get_num_threads(),
                          "machine": platform.processor() or platform.machine(), "torch": torch.__version__}),
              flush=True)


if __name__ == "__main__":
    main()

"""Print a run's test metrics and where its outputs are (used by ``make demo``)."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    run = Path(sys.argv[1])
    metrics = json.loads((run / "metrics.json").read_text())
    print(f"\nrun: {run}  ({metrics['iterations']} iterations, {metrics['train_time_s']:.0f} s)")
    for cam, m in metrics["test"].items():
        line = f"  {cam}: PSNR {m['psnr']:.2f} dB (per-frame mean {m['psnr_per_frame_mean']:.2f}), " \
               f"SSIM {m['ssim']:.4f} (data range {m['ssim_data_range']})"
        if "depth" in m and m["depth"].get("abs_rel") is not None:
            line += f", depth AbsRel {m['depth']['abs_rel']:.4f}"
        print(line)
    print(f"  metrics: {run / 'metrics.json'}")
    print(f"  test renders: {run / 'test'}")
    for video in sorted((run / "videos").glob("*.mp4")):
        print(f"  video: {video}")


if __name__ == "__main__":
    main()

"""Print a run's test metrics and where its outputs are (used by ``make demo``)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.cli import run_main


def optional_line(optional: dict) -> str:
    """LPIPS/FLIP/JOD values, or "n/a" for the ones that could not run."""
    parts = [f"{name.upper()} {rec['value']:.4f}" if rec.get("available") else f"{name.upper()} n/a"
             for name, rec in optional.items()]
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="run directory (log/<expname>) holding metrics.json")
    run = Path(p.parse_args(argv).run)
    if not (run / "metrics.json").is_file():
        p.exit(2, f"error: {run / 'metrics.json'}: not found (train or run tools/evaluate.py first)\n")
    metrics = json.loads((run / "metrics.json").read_text())
    print(f"\nrun: {run}  ({metrics.get('iterations', '?')} iterations, {metrics.get('train_time_s', 0):.0f} s)")
    for cam, m in metrics.get("test", {}).items():
        line = f"  {cam}: PSNR {m['psnr']:.2f} dB (per-frame mean {m['psnr_per_frame_mean']:.2f}), " \
               f"SSIM {m['ssim']:.4f} (data range {m['ssim_data_range']})"
        if "ssim_mixvoxels" in m:
            line += f", SSIM as MixVoxels {m['ssim_mixvoxels']:.4f} (DSSIM {m['dssim_mixvoxels']:.4f})"
        if m.get("depth", {}).get("abs_rel") is not None:
            line += f", depth AbsRel {m['depth']['abs_rel']:.4f}"
        if m.get("optional"):
            line += f"; {optional_line(m['optional'])}"
        print(line)
    print(f"  metrics: {run / 'metrics.json'}")
    if (run / "report.html").is_file():
        print(f"  report: {run / 'report.html'}")
    print(f"  test renders: {run / 'test'}")
    for video in sorted((run / "videos").glob("*.mp4")):
        print(f"  video: {video}")


def cli() -> None:
    """Console entry point (see pyproject.toml)."""
    run_main(main)


if __name__ == "__main__":
    cli()

"""bench/quality.py's family summary of a --depth_gain run, by hand."""
from __future__ import annotations

import pytest

from bench.quality import gain_summary


def test_depth_gain_summary_means_ratio_of_means_and_scenes_meeting_both():
    rows = [{"dpsnr": 2.0, "psnr_none": 20.0, "psnr_depth": 22.0, "abs_rel_none": 0.2, "abs_rel_depth": 0.08,
             "abs_rel_ratio": 0.4},
            {"dpsnr": 1.0, "psnr_none": 30.0, "psnr_depth": 31.0, "abs_rel_none": 0.4, "abs_rel_depth": 0.3,
             "abs_rel_ratio": 0.75}]
    s = gain_summary(rows)
    assert s["mean"]["dpsnr"] == pytest.approx(1.5)
    assert s["mean"]["psnr_depth"] == pytest.approx(26.5)
    assert s["abs_rel_ratio_of_means"] == pytest.approx(0.19 / 0.3)  # (0.08 + 0.3) / (0.2 + 0.4)
    assert s["scenes_meeting_both"] == 1 and s["n_scenes"] == 2

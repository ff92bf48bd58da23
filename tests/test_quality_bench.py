"""bench/quality.py's family summary of a --depth_gain run, by hand."""
from __future__ import annotations

import numpy as np
import pytest

from bench.depth_gain import depth_ratio_halves
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


def test_depth_ratio_halves_split_at_the_median_true_depth():
    gt = np.array([[[1.0, 2.0], [3.0, 4.0]]])  # [T=1, H=2, W=2]
    pred = np.array([[[0.5, 2.0], [3.0, 8.0]]])  # ratios 0.5 1 1 2
    assert depth_ratio_halves(pred, gt, np.ones_like(gt, bool)) == {"near": 0.75, "far": 1.5}  # split at 2.5
    mask = gt < 4  # split at 2: near {0.5, 1}, far {1}
    assert depth_ratio_halves(pred, gt, mask) == {"near": 0.75, "far": 1.0}


def test_oracle_warp_shifts_by_the_disparity_and_drops_occluded_and_outside_pixels():
    from bench.oracle_ibr import warp_from

    h, w, focal, z = 8, 16, 10.0, 5.0
    dst = np.hstack([np.eye(3), np.zeros((3, 1))])  # [3, 4], at the origin looking down -z
    src = dst.copy()
    src[0, 3] = 1.0  # one unit to the right: disparity focal * 1 / z = 2 pixels
    ramp = np.repeat(np.tile(np.arange(w, dtype=np.float32), (h, 1))[..., None], 3, -1)  # colour = column
    depth_src = np.full((h, w), z)
    depth_src[:, 5] = 3.0  # something nearer in front of the point seen through source column 5
    colour, visible = warp_from(np.full((h, w), z), dst, src, focal, ramp, depth_src)
    cols = np.arange(w)
    expect_visible = (cols >= 2) & (cols != 7)  # columns 0-1 fall outside, column 7 lands on the occluder
    assert (visible == expect_visible[None]).all()
    np.testing.assert_allclose(colour[:, expect_visible, 0], np.broadcast_to(cols[expect_visible] - 2.0,
                                                                             (h, expect_visible.sum())), atol=1e-5)


def test_oracle_scores_on_the_tiny_scene(scene_copy):
    from bench.oracle_ibr import oracle_scores

    s = oracle_scores(scene_copy, "configs/demo.txt")
    assert s["coverage"] > 0.5 and s["psnr_seen"] > 20 and s["psnr_static"] > 20, s

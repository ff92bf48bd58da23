"""Pure volume-rendering functions against hand-computed cases."""
from __future__ import annotations

import math

import pytest
import torch

from models import volume_rendering as vr


def test_weights_from_alpha_by_hand():
    alpha = torch.tensor([[0.5, 0.5, 1.0], [0.0, 0.25, 0.5], [1.0, 0.3, 0.9]])
    w = vr.weights_from_alpha(alpha)
    expected = torch.tensor([[0.5, 0.25, 0.25], [0.0, 0.25, 0.375], [1.0, 0.0, 0.0]])
    torch.testing.assert_close(w, expected, atol=1e-7, rtol=0)


def test_weights_from_sigma_and_dist_by_hand():
    ln2 = math.log(2.0)
    # sigma * dist = ln 2 -> alpha 1/2; ln 4 -> 3/4; 0 -> 0
    sigma = torch.tensor([[1.0, 2.0, 0.0, 1.0]])
    dist = torch.tensor([[ln2, ln2, 5.0, 2 * ln2]])
    alpha = vr.alpha_from_sigma(sigma, dist)
    torch.testing.assert_close(alpha, torch.tensor([[0.5, 0.75, 0.0, 0.75]]))
    w = vr.weights_from_alpha(alpha)
    # T = 1, 1/2, 1/8, 1/8 -> w = 1/2, 3/8, 0, 3/32; remaining transmittance 1/32
    torch.testing.assert_close(w, torch.tensor([[0.5, 0.375, 0.0, 3 / 32]]))
    assert 1 - w.sum() == pytest.approx(1 / 32, abs=1e-6)


def test_weights_along_sample_axis_with_frames():
    # [N=1, S=3, T=2]: frame 0 alphas (0.5, 0.5, 1), frame 1 alphas (1, x, x)
    alpha = torch.tensor([[[0.5, 1.0], [0.5, 0.7], [1.0, 0.2]]])
    w = vr.weights_from_alpha(alpha, dim=1)
    torch.testing.assert_close(w, torch.tensor([[[0.5, 1.0], [0.25, 0.0], [0.25, 0.0]]]), atol=1e-7, rtol=0)


def test_composite_by_hand():
    w = torch.tensor([[0.5, 0.25, 0.25]])
    rgb = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]])
    torch.testing.assert_close(vr.composite(w, rgb), torch.tensor([[0.5, 0.25, 0.25]]))
    # per-frame values [N, S, T, C] with weights [N, S, T]
    w_t = torch.tensor([[[1.0, 0.0], [0.0, 0.5]]])
    vals = torch.tensor([[[[2.0], [3.0]], [[5.0], [7.0]]]])
    torch.testing.assert_close(vr.composite(w_t, vals), torch.tensor([[[2.0], [3.5]]]))


def test_expected_depth_is_conditional_on_termination_by_hand():
    # opacity 0.5 split 0.25 / 0.25 at t = 0.2 and 0.6: (0.05 + 0.15) / 0.5 = 0.4 (the undivided sum is 0.2)
    w = torch.tensor([[0.25, 0.0, 0.25], [0.0, 0.0, 0.0]])
    t = torch.tensor([[0.2, 0.4, 0.6], [0.1, 0.5, 0.9]])
    torch.testing.assert_close(vr.expected_depth(w, t), torch.tensor([0.4, 0.0]))  # no weight -> 0
    # per frame: w [N=1, S=2, T=2] with t [1, 2, 1]
    w_t = torch.tensor([[[0.1, 0.0], [0.3, 0.8]]])
    torch.testing.assert_close(vr.expected_depth(w_t, torch.tensor([[[1.0], [2.0]]])), torch.tensor([[1.75, 2.0]]))


def test_interval_lengths_by_hand():
    t = torch.tensor([[0.1, 0.3, 0.7], [0.5, 0.6, 0.9]])
    dt = vr.interval_lengths(t, torch.tensor([0.0, 0.4]), torch.tensor([1.0, 1.0]))
    # ray 0: bounds 0 | 0.2 | 0.5 | 1 ; ray 1: 0.4 | 0.55 | 0.75 | 1
    torch.testing.assert_close(dt, torch.tensor([[0.2, 0.3, 0.5], [0.15, 0.2, 0.25]]))


def test_interval_lengths_sum_to_range_and_last_is_not_zero():
    near, far = torch.tensor([0.0, 0.2, 1.0]), torch.tensor([1.0, 0.9, 6.0])
    t = vr.stratified_samples(3, 16, near, far, jitter=True, generator=torch.Generator().manual_seed(0))
    dt = vr.interval_lengths(t, near, far)
    torch.testing.assert_close(dt.sum(1), far - near)
    assert (dt > 0).all()
    assert (dt[:, -1] >= far - t[:, -1] - 1e-6).all()  # the last interval reaches far


def test_stratified_samples_lie_in_their_bins():
    n, s = 64, 8
    near, far = torch.linspace(0.0, 1.0, n), torch.linspace(2.0, 5.0, n)
    t = vr.stratified_samples(n, s, near, far, jitter=True, generator=torch.Generator().manual_seed(1))
    assert t.shape == (n, s)
    k = torch.arange(s)
    lo = near[:, None] + (far - near)[:, None] * k / s
    hi = near[:, None] + (far - near)[:, None] * (k + 1) / s
    assert ((t >= lo - 1e-6) & (t <= hi + 1e-6)).all()
    # per-ray jitter: the within-bin offsets differ between rays
    frac = (t - lo) / (hi - lo)
    assert frac[:, 0].unique().numel() == n
    assert frac.std(0).min() > 0.15


def test_stratified_samples_without_jitter_are_bin_centres():
    t = vr.stratified_samples(2, 4, 0.0, 1.0, jitter=False)
    torch.testing.assert_close(t, torch.tensor([[0.125, 0.375, 0.625, 0.875]] * 2))


def test_merge_samples_sorts_and_recomputes_intervals():
    near, far = torch.tensor([0.0, 0.0]), torch.tensor([1.0, 1.0])
    t_u = torch.tensor([[0.125, 0.375, 0.625, 0.875], [0.125, 0.375, 0.625, 0.875]])
    t_x = torch.tensor([[0.5, 0.2], [1.5, -0.3]])  # unsorted, and ray 1 outside [near, far] (clamped)
    t, dt = vr.merge_samples(t_u, t_x, near, far)
    torch.testing.assert_close(t, torch.tensor([[0.125, 0.2, 0.375, 0.5, 0.625, 0.875],
                                                [0.0, 0.125, 0.375, 0.625, 0.875, 1.0]]))
    assert (t[:, 1:] >= t[:, :-1]).all()
    torch.testing.assert_close(dt, vr.interval_lengths(t, near, far))
    # ray 0 by hand: bounds 0 | 0.1625 | 0.2875 | 0.4375 | 0.5625 | 0.75 | 1
    torch.testing.assert_close(dt[0], torch.tensor([0.1625, 0.125, 0.15, 0.125, 0.1875, 0.25]))
    torch.testing.assert_close(dt.sum(1), far - near)
    assert (dt >= 0).all()


AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def test_ray_aabb_hit_miss_inside():
    origins = torch.tensor([[0.0, 0.0, -3.0],   # hits front to back
                            [0.0, 3.0, -3.0],   # passes above the box
                            [0.0, 0.0, 0.0],    # starts inside
                            [0.5, 0.5, -3.0],   # unnormalized direction: t in direction units
                            [0.0, 0.0, 3.0],    # box is behind the origin
                            [-3.0, -3.0, 0.0]])  # diagonal through the corner region
    dirs = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 2.0],
                         [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    near, far, hit = vr.ray_aabb_intersect(origins, dirs, AABB)
    assert hit.tolist() == [True, False, True, True, False, True]
    torch.testing.assert_close(near[hit], torch.tensor([2.0, 0.0, 1.0, 2.0]))
    torch.testing.assert_close(far[hit], torch.tensor([4.0, 1.0, 2.0, 4.0]))
    assert (near[~hit] == 0).all() and (far[~hit] == near[~hit]).all()


def test_ray_aabb_min_near():
    near, far, hit = vr.ray_aabb_intersect(torch.tensor([[0.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, -1.0]]),
                                           AABB, min_near=0.25)
    assert hit.item() and near.item() == 0.25 and far.item() == 1.0

"""Rendering sized by a memory budget: chunk sizes, chunked == unchunked, every ray of a camera video
rendered once (also when the float frames go to a temporary file)."""
from __future__ import annotations

import numpy as np
import pytest

from engine.render.frames import (
    BYTES_PER_SAMPLE_FRAME,
    RenderSettings,
    budget_bytes,
    chunk_size,
    iter_camera_frames,
    model_frames,
    render_pose,
)
from engine.train.trainer import Trainer


@pytest.fixture(scope="module")
def trained(make_cfg):
    trainer = Trainer(make_cfg("budget", n_iters=6, upsamp_list=(2,), alpha_mask_list=(4,)))
    trainer.fit()
    model = trainer.model.eval()
    assert model.alpha_mask is not None and model_frames(model) == 4
    return model, trainer.data


def test_chunk_size_follows_the_budget(trained):
    model, _ = trained
    per_ray = model.n_samples * 4 * BYTES_PER_SAMPLE_FRAME
    assert chunk_size(model, budget_mb=1) == 2 ** 20 // per_ray
    assert chunk_size(model, budget_mb=64) == 64 * 2 ** 20 // per_ray
    assert chunk_size(model, budget_mb=1e-6) == 1  # never zero
    assert budget_bytes(-1, "cpu") == 192 * 2 ** 20


def test_chunked_render_equals_unchunked(trained):
    """Chunks of a few rays (tiny budget) give the one-chunk render to 1e-6."""
    model, data = trained
    k = data.test_idx[0]
    args = (model, data.c2w[k], data.h, data.w, data.focal, data.normalization, "cpu")
    small = RenderSettings(budget_mb=5 * model.n_samples * 4 * BYTES_PER_SAMPLE_FRAME / 2 ** 20)  # 5 rays
    whole = render_pose(*args, settings=RenderSettings(budget_mb=1024))
    parts = render_pose(*args, settings=small)
    assert whole.dynamic.any() and whole.rgb.std() > 1e-3
    for name in ("rgb", "depth", "static_rgb", "static_depth", "acc"):
        rtol = 1e-6 if "depth" in name else 0  # world-unit depth (up to ~10): a few float32 ulps, as below
        np.testing.assert_allclose(getattr(parts, name), getattr(whole, name), atol=1e-6, rtol=rtol, err_msg=name)
    np.testing.assert_array_equal(parts.dynamic, whole.dynamic)


@pytest.mark.parametrize("buffer_bytes", [1 << 30, 1])  # RAM; a temporary memory-mapped file
def test_camera_video_renders_each_ray_once(trained, monkeypatch, buffer_bytes):
    model, data = trained
    k = data.train_idx[0]
    ref = render_pose(model, data.c2w[k], data.h, data.w, data.focal, data.normalization, "cpu")
    rendered = []
    forward = type(model).forward
    monkeypatch.setattr(type(model), "forward", lambda self, rays, **kw: rendered.append(len(rays))
                        or forward(self, rays, **kw))
    statics: dict = {}
    settings = RenderSettings(budget_mb=40 * model.n_samples * 4 * BYTES_PER_SAMPLE_FRAME / 2 ** 20)  # 40 rays
    frames = list(iter_camera_frames(model, data.c2w[k], data.h, data.w, data.focal, data.normalization, "cpu",
                                     [3, 0, 2], buffer_bytes, progress=False, statics=statics, settings=settings))
    assert sum(rendered) == data.h * data.w and max(rendered) <= 40
    assert [t for t, _, _ in frames] == [3, 0, 2]
    for t, rgb, depth in frames:
        np.testing.assert_allclose(rgb, ref.rgb[t], atol=1e-6, rtol=0)
        np.testing.assert_allclose(depth, ref.depth[t], atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(statics["static_rgb"], ref.static_rgb, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(statics["dynamic"], ref.dynamic)

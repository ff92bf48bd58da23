"""Video dataset and frame cache: keyed, atomic caches; clear errors on bad scenes; correct pixels."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from core.errors import UserError
from dataLoader.dataset import DataOptions, VideoDataset
from dataLoader.depth_space import ray_param_to_camera_z
from dataLoader.frame_cache import build_cache, cache_key, scan_frames
from dataLoader.rays import pose_rays
from dataLoader.samplers import EpochSampler
from dataLoader.scene_layout import SceneDir
from dataLoader.temporal_stats import temporal_median, temporal_mode

H, W, T, K = 24, 32, 4, 4


def png(scene, cam: int, t: int) -> np.ndarray:
    return iio.imread(SceneDir(scene).frames / f"cam{cam:02d}" / f"{t:04d}.png")


# ---------------------------------------------------------------------- cache keys
def test_cache_key_depends_on_every_input(scene_copy):
    src = scan_frames(scene_copy)
    key = cache_key(src, 1.0, 1)
    assert cache_key(scan_frames(scene_copy), 1.0, 1) == key  # stable
    assert cache_key(scan_frames(scene_copy, 0, 3), 1.0, 1) != key  # n_frames
    assert cache_key(scan_frames(scene_copy, 1, 3), 1.0, 1) != cache_key(scan_frames(scene_copy, 0, 3), 1.0, 1)
    assert cache_key(src, 2.0, 1) != key  # downsample
    assert cache_key(src, 1.0, 3) != key  # blur
    frame = SceneDir(scene_copy).frames / "cam02" / "0001.png"
    st = frame.stat()
    os.utime(frame, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))  # touch
    assert cache_key(scan_frames(scene_copy), 1.0, 1) != key


def test_caches_of_different_settings_live_side_by_side(scene_copy):
    paths = {}
    for n_frames, ds in ((4, 1.0), (3, 1.0), (4, 2.0)):
        paths[n_frames, ds] = build_cache(scene_copy, scan_frames(scene_copy, 0, n_frames), ds, 1)
    assert len(set(paths.values())) == 3
    for (n_frames, ds), path in paths.items():
        meta = json.loads((path / "meta.json").read_text())
        assert meta["n_frames"] == n_frames and meta["hw"] == [round(H / ds), round(W / ds)]
        assert np.load(path / "frames.npy", mmap_mode="r").shape == (K, round(H / ds), round(W / ds), n_frames, 3)
    # reuse: the same inputs return the same directory without rebuilding it
    meta_file = paths[4, 1.0] / "meta.json"
    stamp = meta_file.stat().st_mtime_ns
    assert build_cache(scene_copy, scan_frames(scene_copy), 1.0, 1) == paths[4, 1.0]
    assert meta_file.stat().st_mtime_ns == stamp


def test_temporal_median_is_the_lower_middle_value():
    cam = np.zeros((2, 1, 4, 3), dtype=np.uint8)
    cam[0, 0, :, 0] = [9, 1, 5, 3]  # sorted 1 3 5 9: the lower middle value is 3
    cam[1, 0, :, 2] = [200, 7, 7, 255]  # sorted 7 7 200 255 -> 7
    want = np.zeros((2, 1, 3), dtype=np.uint8)
    want[0, 0, 0], want[1, 0, 2] = 3, 7
    np.testing.assert_array_equal(temporal_median(cam, rows=1), want)
    np.testing.assert_array_equal(temporal_median(cam[:, :, :3]), [[[5, 0, 0]], [[0, 0, 7]]])  # odd T: 1 5 9, 7 7 200


def test_temporal_mode_is_the_longest_seen_colour():
    """Hand-built pixels, T = 8, tolerance 8 levels: the mode is the mean of the largest set of frames that
    agree (every channel) with one frame; where the median's support holds half the frames, that support."""
    red = [
        [10, 10, 10, 200, 150, 100, 50, 250],  # background in 3 of 8 frames: median 50, mode 10
        [100, 102, 98, 101, 100, 99, 103, 100],  # all agree: their mean 100.375 -> 100
        [60, 60, 60, 60, 60, 200, 210, 220],  # the median's support (5 frames): 60
        [10, 18, 18, 18, 100, 150, 200, 250],  # 10 is within 8 of the median 18: (10 + 3 * 18) / 4 = 16
        [10, 19, 19, 19, 100, 150, 200, 250],  # 10 is 9 from 19: it is left out, 19
        [10, 10, 14, 200, 150, 100, 50, 250],  # frame 2's green (20) disagrees: frames 0-1 only, 10
    ]
    cam = np.zeros((len(red), 1, 8, 3), dtype=np.uint8)
    cam[:, 0, :, 0] = red
    cam[5, 0, 2, 1] = 20
    want = np.zeros((len(red), 1, 3), dtype=np.uint8)
    want[:, 0, 0] = [10, 100, 60, 16, 19, 10]
    np.testing.assert_array_equal(temporal_mode(cam), want)
    assert temporal_median(cam)[0, 0, 0] == 50
    np.testing.assert_array_equal(temporal_mode(cam, temporal_median(cam), candidates=2)[0], want[0])  # frames 0, 7


def test_cache_holds_the_median_and_mode_and_replaces_older_formats(scene_copy):
    cache = SceneDir(scene_copy).cache
    old = cache / "0123456789abcdef"  # a complete cache of the previous format
    old.mkdir(parents=True)
    (old / "meta.json").write_text(json.dumps({"version": 1}))
    path = build_cache(scene_copy, scan_frames(scene_copy), 1.0, 1)
    frames = np.load(path / "frames.npy")
    want = np.sort(frames, axis=3)[:, :, :, (T - 1) // 2]  # T = 4: the second of the sorted values
    np.testing.assert_array_equal(np.load(path / "median.npy"), want)
    np.testing.assert_array_equal(np.load(path / "mode.npy"), np.stack([temporal_mode(cam) for cam in frames]))
    assert not old.exists() and path.is_dir()


def test_rewritten_frame_is_not_served_from_a_stale_cache(scene_copy):
    before = VideoDataset(DataOptions(scene_copy)).frames_of(1)
    frame = SceneDir(scene_copy).frames / "cam01" / "0002.png"
    new = 255 - png(scene_copy, 1, 2)
    iio.imwrite(frame, new)
    st = frame.stat()
    os.utime(frame, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))  # make sure the mtime moves
    after = VideoDataset(DataOptions(scene_copy)).frames_of(1)
    np.testing.assert_array_equal(after[2], new)
    np.testing.assert_array_equal(after[[0, 1, 3]], before[[0, 1, 3]])
    assert len([p for p in SceneDir(scene_copy).cache.iterdir() if not p.name.startswith(".")]) == 2


def test_interrupted_cache_is_not_trusted(scene_copy):
    src = scan_frames(scene_copy)
    key = cache_key(src, 1.0, 1)
    cache = SceneDir(scene_copy).cache
    # an interrupted build left its temp dir, and a final dir without meta.json holds garbage
    for d in (cache / f".tmp-{key}", cache / key):
        d.mkdir(parents=True)
        np.save(d / "frames.npy", np.zeros((K, H, W, T, 3), dtype=np.uint8))
        np.save(d / "std.npy", np.zeros((K, H, W), dtype=np.float32))
    ds = VideoDataset(DataOptions(scene_copy))
    for t in range(T):
        np.testing.assert_array_equal(ds.frames_of(2)[t], png(scene_copy, 2, t))
    assert (cache / key / "meta.json").is_file()
    assert not (cache / f".tmp-{key}").exists()


# ---------------------------------------------------------------------- bad input
def write_poses(scene, arr):
    np.save(SceneDir(scene).poses, arr)


def test_poses_rows_differ_from_camera_folders(scene_copy):
    arr = np.load(SceneDir(scene_copy).poses)
    SceneDir(scene_copy).camera_names.unlink()
    write_poses(scene_copy, arr[:3])
    with pytest.raises(UserError, match=r"poses_bounds.npy: 3 pose rows but 4 camera folders"):
        VideoDataset(DataOptions(scene_copy))
    assert not SceneDir(scene_copy).cache.exists()


def test_extra_camera_folder(scene_copy):
    shutil.copytree(SceneDir(scene_copy).frames / "cam03", SceneDir(scene_copy).frames / "cam04")
    with pytest.raises(UserError, match=r"poses_bounds.npy: 4 pose rows but 5 camera folders.*cam04"):
        VideoDataset(DataOptions(scene_copy))


def test_camera_names_differ_from_folders(scene_copy):
    (SceneDir(scene_copy).frames / "cam03").rename(SceneDir(scene_copy).frames / "cam07")
    with pytest.raises(UserError, match=r"poses_bounds.npy: camera names .* do not match .*cam07"):
        VideoDataset(DataOptions(scene_copy))


def test_cameras_with_different_frame_counts(scene_copy):
    (SceneDir(scene_copy).frames / "cam02" / "0003.png").unlink()
    with pytest.raises(UserError, match=r"frames: cameras have different frame counts .*'cam02': 3"):
        VideoDataset(DataOptions(scene_copy))
    assert not SceneDir(scene_copy).cache.exists()


def test_cameras_with_different_image_sizes(scene_copy):
    for t in range(T):
        iio.imwrite(SceneDir(scene_copy).frames / "cam01" / f"{t:04d}.png", np.zeros((12, 16, 3), dtype=np.uint8))
    with pytest.raises(UserError, match=r"frames: cameras have different image sizes .*'cam01': \(12, 16\)"):
        VideoDataset(DataOptions(scene_copy))


def test_unreadable_frame(scene_copy):
    (SceneDir(scene_copy).frames / "cam01" / "0000.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"cam01/0000.png: unreadable image"):
        VideoDataset(DataOptions(scene_copy))


def test_nan_in_poses(scene_copy):
    arr = np.load(SceneDir(scene_copy).poses)
    arr[2, 3] = np.nan
    write_poses(scene_copy, arr)
    with pytest.raises(UserError, match=r"poses_bounds.npy: NaN or inf values in rows \[2\]"):
        VideoDataset(DataOptions(scene_copy))


def test_missing_data_dir_and_frames(tmp_path, scene_copy):
    with pytest.raises(UserError, match=r"nowhere: data directory not found"):
        VideoDataset(DataOptions(tmp_path / "nowhere"))
    shutil.rmtree(SceneDir(scene_copy).frames)
    with pytest.raises(UserError, match=r"frames: no frames folder"):
        VideoDataset(DataOptions(scene_copy))


def test_other_normalization_is_refused(tiny_scene):
    ds = VideoDataset(DataOptions(tiny_scene))
    other = dataclasses.replace(ds.normalization, scale=ds.normalization.scale * 1.1)
    with pytest.raises(UserError, match="poses_bounds.npy: scene normalization differs"):
        VideoDataset(DataOptions(tiny_scene), normalization=other)
    same = VideoDataset(DataOptions(tiny_scene), normalization=ds.normalization)
    np.testing.assert_array_equal(same.c2w, ds.c2w)


# ---------------------------------------------------------------------- gather
def test_gather_returns_the_right_pixels(tiny_scene):
    ds = VideoDataset(DataOptions(tiny_scene))
    assert (ds.h, ds.w, ds.n_frames) == (H, W, T) and ds.train_idx == [1, 2, 3] and ds.test_idx == [0]
    assert ds.n_train_rays == 3 * H * W
    idx = np.array([2303, 0, 1000, 5, 768, 767, 1000])  # unsorted, with a repeat
    batch = ds.gather(idx)
    assert batch.rgb.shape == (7, T, 3) and batch.rgb.dtype == torch.float32
    assert batch.std.shape == (7,) and batch.origins.shape == batch.directions.shape == (7, 3)
    assert batch.rgb.min() >= 0 and batch.rgb.max() <= 1
    frames = {k: np.stack([png(tiny_scene, k, t) for t in range(T)]) for k in (1, 2, 3)}  # [T, H, W, 3]
    rays = {k: ds.camera_rays(k) for k in (1, 2, 3)}
    for b, i in enumerate(idx):
        cam, pix = 1 + i // (H * W), i % (H * W)
        y, x = divmod(pix, W)
        expected = frames[cam][:, y, x].astype(np.float32) / 255
        np.testing.assert_array_equal(batch.rgb[b].numpy(), expected)
        # width 32 -> auto blur kernel 1 (no blur): std over time, mean over channels
        assert batch.std[b].item() == pytest.approx(float((frames[cam][:, y, x] / 255.0).std(0).mean()), abs=1e-6)
        o, d = rays[cam]
        torch.testing.assert_close(batch.origins[b], o[pix])
        torch.testing.assert_close(batch.directions[b], d[pix])
        # near: the ray parameter where the pixel's camera ray reaches the camera's near bound (camera z)
        cam_rays = pose_rays(ds.c2w[cam], H, W, ds.focal, ds.normalization)
        z = ray_param_to_camera_z(batch.near[b:b + 1].double(), cam_rays.cam_o[pix:pix + 1],
                                  cam_rays.cam_d[pix:pix + 1], ds.normalization)
        assert float(z) == pytest.approx(float(ds.rig.bounds[cam, 0]), rel=1e-5)


def test_downsampled_dataset(tiny_scene):
    ds = VideoDataset(DataOptions(tiny_scene, downsample=2.0, n_frames=2))
    assert (ds.h, ds.w, ds.n_frames) == (12, 16, 2)
    assert ds.focal == pytest.approx(ds.rig.hwf[2] / 2)
    assert ds.gather(np.arange(5)).rgb.shape == (5, 2, 3)
    assert ds.cache.frames.dtype == np.uint8


# ---------------------------------------------------------------------- sampler
def test_epoch_sampler_covers_every_ray_once_and_resumes_exactly():
    sampler = EpochSampler(10, 3, seed=7)
    epoch0 = np.concatenate([sampler.next() for _ in range(3)])  # 9 of 10; the remainder is dropped
    assert len(set(epoch0.tolist())) == 9 and sampler.epoch == 0
    first_of_epoch1 = sampler.next()
    assert sampler.epoch == 1 and len(first_of_epoch1) == 3
    state = sampler.state_dict()
    expected = [sampler.next() for _ in range(5)]
    resumed = EpochSampler(10, 3, seed=7)
    resumed.load_state_dict(state)
    for want in expected:
        np.testing.assert_array_equal(resumed.next(), want)
    assert not np.array_equal(np.concatenate([EpochSampler(10, 3, seed=8).next() for _ in range(3)]), epoch0)

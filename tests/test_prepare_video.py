"""tools/prepare_video.py and dataLoader.video_io: frames from tiny generated mp4s."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import script_env

from core.errors import UserError
from dataLoader.atomic_io import write_png, write_video
from dataLoader.scene_layout import SceneDir
from dataLoader.video_io import (
    extract_frames,
    list_videos,
    probe_video,
    read_png,
    read_video,
)

H, W, T = 24, 32, 6


def _frames(n: int = T, h: int = H, w: int = W) -> np.ndarray:
    """[n, h, w, 3] uint8: frame k is a flat colour whose red channel encodes k, with a gray left half."""
    f = np.zeros((n, h, w, 3), np.uint8)
    f[..., 0] = (40 + 30 * np.arange(n))[:, None, None]
    f[..., 1] = 120
    f[..., 2] = 80
    f[:, :, : w // 2] = 128
    return f


def _make_videos(folder: Path, counts=(T, T)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, n in enumerate(counts):
        paths.append(folder / f"cam{k:02d}.mp4")
        write_video(paths[-1], _frames(n), fps=10)
    return paths


def _run_script(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.prepare_video", *map(str, args)],
                          capture_output=True, text=True, timeout=120, env=script_env())


def test_png_round_trip_keeps_rgb_order(tmp_path):
    img = np.zeros((5, 7, 3), np.uint8)
    img[..., 0], img[0, 0] = 200, (1, 2, 3)
    write_png(tmp_path / "a.png", img)
    np.testing.assert_array_equal(read_png(tmp_path / "a.png"), img)
    with pytest.raises(UserError, match="b.png"):
        read_png(tmp_path / "b.png")


def test_write_and_read_video_round_trip(tmp_path):
    (path,) = _make_videos(tmp_path, counts=(T,))
    info = probe_video(path)
    assert (info.width, info.height) == (W, H)
    got = np.stack(list(read_video(path)))
    assert got.shape == (T, H, W, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - _frames().astype(int)).mean() < 2.0
    sub = np.stack(list(read_video(path, frame_start=2, n_frames=3)))
    np.testing.assert_array_equal(sub, got[2:5])


def test_write_video_pads_odd_sizes(tmp_path):
    write_video(tmp_path / "odd.mp4", _frames(2, 25, 33), fps=5)
    frames = list(read_video(tmp_path / "odd.mp4"))
    assert len(frames) == 2 and frames[0].shape == (26, 34, 3)


def test_extract_frames_layout_and_colours(tmp_path):
    _make_videos(tmp_path / "videos")
    summary = extract_frames(tmp_path)
    assert summary.cams == ("cam00", "cam01") and summary.n_frames == T and summary.size == (W, H)
    for cam in summary.cams:
        names = sorted(p.name for p in (SceneDir(tmp_path).frames / cam).iterdir())
        assert names == [f"{k:04d}.png" for k in range(T)]
    img = read_png(SceneDir(tmp_path).frames / "cam01" / "0003.png")
    assert img.shape == (H, W, 3)
    right = img[:, W // 2 + 2:].reshape(-1, 3).mean(0)
    np.testing.assert_allclose(right, (40 + 90, 120, 80), atol=6)
    assert not any(p.name.startswith(".prepare_video") for p in tmp_path.iterdir())


def test_extract_frame_range_and_downsample(tmp_path):
    _make_videos(tmp_path)
    summary = extract_frames(tmp_path, frame_start=2, n_frames=3, downsample=2.0)
    assert summary.n_frames == 3 and summary.size == (W // 2, H // 2)
    files = sorted((SceneDir(tmp_path).frames / "cam00").glob("*.png"))
    assert [f.name for f in files] == ["0000.png", "0001.png", "0002.png"]
    img = read_png(files[0])
    assert img.shape == (H // 2, W // 2, 3)
    assert abs(int(img[:, -3:, 0].mean()) - (40 + 30 * 2)) <= 6  # 0000.png is video frame 2


def test_frame_range_past_end_is_a_user_error(tmp_path):
    _make_videos(tmp_path)
    with pytest.raises(UserError, match="past the end"):
        extract_frames(tmp_path, frame_start=T - 1, n_frames=3)
    with pytest.raises(UserError, match="past the end"):
        extract_frames(tmp_path, frame_start=T + 5)
    assert not SceneDir(tmp_path).frames.exists()


def test_mismatched_frame_counts_name_the_videos(tmp_path):
    _make_videos(tmp_path, counts=(T, T - 2))
    with pytest.raises(UserError, match=r"cam00\.mp4: 6.*cam01\.mp4: 4"):
        extract_frames(tmp_path)
    assert not SceneDir(tmp_path).frames.exists()
    assert extract_frames(tmp_path, n_frames=T - 2).n_frames == T - 2  # a common range is fine


def test_mismatched_sizes_and_missing_videos(tmp_path):
    with pytest.raises(UserError, match="no .mp4 videos"):
        list_videos(tmp_path)
    write_video(tmp_path / "a.mp4", _frames(3), fps=10)
    write_video(tmp_path / "b.mp4", _frames(3, 16, 16), fps=10)
    with pytest.raises(UserError, match=r"b\.mp4 is 16x16 but a\.mp4 is 32x24"):
        extract_frames(tmp_path)


def test_existing_frames_need_overwrite(tmp_path):
    _make_videos(tmp_path)
    extract_frames(tmp_path, n_frames=2)
    with pytest.raises(UserError, match="--overwrite 1"):
        extract_frames(tmp_path)
    assert extract_frames(tmp_path, overwrite=True).n_frames == T
    assert len(list((SceneDir(tmp_path).frames / "cam00").glob("*.png"))) == T


def test_script_success_and_corrupt_video(tmp_path):
    _make_videos(tmp_path / "ok")
    done = _run_script(tmp_path / "ok", "--n_frames", 2)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().count("\n") == 0 and "2 cameras x 2 frames" in done.stdout
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "cam00.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    failed = _run_script(bad)
    assert failed.returncode == 2
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and "cam00.mp4" in lines[0] and "Traceback" not in failed.stderr
    assert not SceneDir(bad).frames.exists()

"""Rendering from a checkpoint: chunked frames and paths agree with render_pose, render_one_video
writes playable mp4s in every mode, and bad input ends with one ``error:`` line and exit code 2."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

import render_one_video
from engine.checkpoint import load_model
from engine.cli import run_main
from engine.render.camera_paths import CameraPath, load_path_file, save_path_file
from engine.render.frames import iter_camera_frames, iter_path_frames, render_pose
from engine.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
T, H, W = 4, 24, 32  # the tiny scene of conftest.py


@pytest.fixture(scope="module")
def ckpt(make_cfg) -> Path:
    """A checkpoint of a 6-iteration run on the tiny scene (grid upsampled and alpha-masked once)."""
    return Trainer(make_cfg("render_ckpt", n_iters=6, upsamp_list=(3,), alpha_mask_list=(4,))).fit()


@pytest.fixture(scope="module")
def loaded(ckpt):
    model, norm, state = load_model(ckpt, "cpu")
    return model, norm, state["extra"]["cameras"]


def run_script(monkeypatch, capsys, *argv) -> tuple[int, str, str]:
    """Run render_one_video.py in-process -> (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["render_one_video.py", *map(str, argv)])
    try:
        run_main(render_one_video.main)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def read_video(path: Path) -> np.ndarray:
    with imageio.get_reader(path, format="FFMPEG") as reader:
        return np.stack([frame for frame in reader])  # list(reader) trips on len() == inf


# ---------------------------------------------------------------------- library
def test_render_pose_is_a_plausible_render(loaded):
    model, norm, cams = loaded
    r = render_pose(model, cams["c2w"][1], H, W, cams["focal"], norm, "cpu")
    assert r.rgb.shape == (T, H, W, 3) and r.depth.shape == (T, H, W)
    assert r.rgb.std() > 1e-3 and np.all(np.isfinite(r.depth)) and np.all(r.depth > 0)


def test_chunked_camera_frames_equal_render_pose(loaded):
    """Row blocks of 3 rays' worth and a buffer of one frame force both kinds of chunking."""
    model, norm, cams = loaded
    ref = render_pose(model, cams["c2w"][2], H, W, cams["focal"], norm, "cpu")
    frames = list(iter_camera_frames(model, cams["c2w"][2], H, W, cams["focal"], norm, "cpu", [1, 2, 3],
                                     max_buffer_bytes=H * W * 16, progress=False))
    assert [t for t, _, _ in frames] == [1, 2, 3]
    for t, rgb, depth in frames:
        np.testing.assert_allclose(rgb, ref.rgb[t], atol=1e-5)
        np.testing.assert_allclose(depth, ref.depth[t], rtol=1e-5)


def test_path_of_a_training_pose_reproduces_its_render(loaded, tmp_path):
    """A path file holding training camera 1's own world pose at every time gives render_pose's frames."""
    model, norm, cams = loaded
    c2w = np.asarray(cams["c2w"][1])
    save_path_file(tmp_path / "own.json", CameraPath(c2w[None].repeat(T, 0), np.arange(T)), norm)
    path = load_path_file(tmp_path / "own.json", norm, n_frames=T)
    ref = render_pose(model, c2w, H, W, cams["focal"], norm, "cpu")
    out = list(iter_path_frames(model, path, H, W, cams["focal"], norm, "cpu", progress=False))
    assert len(out) == T
    for i, rgb, depth in out:
        np.testing.assert_allclose(rgb, ref.rgb[i], atol=1e-5)
        np.testing.assert_allclose(depth, ref.depth[i], rtol=1e-5)


# ---------------------------------------------------------------------- render_one_video.py
@pytest.mark.parametrize("mode, width", [("rgb", W), ("depth", W), ("rgbd", 2 * W)])
def test_render_one_video_writes_playable_mp4(ckpt, tmp_path, monkeypatch, capsys, mode, width):
    code, out, _ = run_script(monkeypatch, capsys, "--ckpt", ckpt, "--cam_num", 2, "--mode", mode,
                              "--out_dir", tmp_path, "--device", "cpu")
    assert code == 0
    video = tmp_path / f"cam02_{mode}.mp4"
    assert str(video) in out
    frames = read_video(video)
    assert frames.shape == (T, H, width, 3)
    assert frames.std() > 1.0  # not a blank video


def test_frames_downsample_and_png(ckpt, tmp_path, monkeypatch, capsys):
    code, _, _ = run_script(monkeypatch, capsys, "--ckpt", ckpt, "--cam_num", 1, "--frames", "1:3",
                            "--downsample", 2, "--png", 1, "--out_dir", tmp_path, "--device", "cpu")
    assert code == 0
    name = "cam01_f0001-0002_rgb_ds2"
    assert read_video(tmp_path / f"{name}.mp4").shape == (2, H // 2, W // 2, 3)
    pngs = sorted(p.name for p in (tmp_path / name).glob("*.png"))
    assert pngs == ["0001.png", "0002.png"]
    assert imageio.imread(tmp_path / name / "0001.png").shape == (H // 2, W // 2, 3)


@pytest.mark.parametrize("argv, name, n", [
    (["--path", "spiral", "--n_views", 5], "path_spiral_rgb_ds2", 5),
    (["--path", "bullet_time", "--n_views", 3, "--freeze_frame", 2], "path_bullet_time_t0002_rgb_ds2", 3),
])
def test_paths_render_in_one_pass(ckpt, tmp_path, monkeypatch, capsys, argv, name, n):
    code, _, _ = run_script(monkeypatch, capsys, "--ckpt", ckpt, *argv, "--downsample", 2, "--out_dir", tmp_path,
                            "--device", "cpu")
    assert code == 0
    assert read_video(tmp_path / f"{name}.mp4").shape == (n, H // 2, W // 2, 3)


def test_script_runs_standalone_with_default_output(ckpt):
    """The real command line: RUN/videos/<cam>_<mode>.mp4 next to the checkpoint."""
    proc = subprocess.run([sys.executable, str(ROOT / "render_one_video.py"), "--ckpt", str(ckpt), "--cam_num", "3",
                           "--mode", "rgbd", "--device", "cpu"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    video = ckpt.parent / "videos" / "cam03_rgbd.mp4"
    assert proc.stdout.strip().endswith(f"{video}") and read_video(video).shape == (T, H, 2 * W, 3)
    assert f"({2 * W}x{H}, rgbd)" in proc.stdout  # the summary names the side-by-side size


# ---------------------------------------------------------------------- bad input
def incompatible_ckpt(ckpt: Path, tmp_path: Path) -> Path:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state["version"] = 999
    torch.save(state, tmp_path / "future.pt")
    return tmp_path / "future.pt"


def malformed_path_file(tmp_path: Path) -> Path:
    bad = np.concatenate([np.diag([-1.0, 1.0, 1.0]), np.zeros((3, 1))], axis=1)  # mirrored: det -1
    (tmp_path / "bad.json").write_text(json.dumps({"frames": [{"c2w": bad.tolist(), "time": 0}]}))
    return tmp_path / "bad.json"


@pytest.mark.parametrize("case, message", [
    ("cam", "--cam_num 7 out of range: the rig has 4 cameras"),
    ("path_file", "frame 0: c2w rotation is not orthonormal with det +1"),
    ("version", "checkpoint version 999 is not supported"),
    ("out_dir", "output directory cannot be written"),
    ("frames", "--frames '2:9' is outside the model's 4 frames"),
    ("missing", "checkpoint not found"),
])
def test_bad_input_gives_one_error_line_and_exit_2(ckpt, tmp_path, monkeypatch, capsys, case, message):
    (tmp_path / "a_file").write_text("x")
    argv = {
        "cam": ["--ckpt", ckpt, "--cam_num", 7],
        "path_file": ["--ckpt", ckpt, "--path_file", malformed_path_file(tmp_path)],
        "version": ["--ckpt", incompatible_ckpt(ckpt, tmp_path)],
        "out_dir": ["--ckpt", ckpt, "--out_dir", tmp_path / "a_file" / "videos"],
        "frames": ["--ckpt", ckpt, "--frames", "2:9"],
        "missing": ["--ckpt", tmp_path / "nope.pt"],
    }[case]
    code, out, err = run_script(monkeypatch, capsys, *argv, "--device", "cpu")
    assert code == 2
    assert err.startswith("error:") and err.count("\n") == 1, err
    assert message in err
    assert not list(tmp_path.rglob("*.mp4"))

"""Long videos as fragments: planning by hand, bad ranges, sequential and per-device training, stitching."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.errors import UserError
from dataLoader.atomic_io import write_video
from dataLoader.video_io import read_video
from engine.checkpoint import load_checkpoint
from engine.train.fragments import (
    Fragment,
    parse_devices,
    plan_fragments,
    render_fragments,
    stitch_videos,
    train_fragments,
)
from engine.workflow import VideoRequest
from tests.conftest import TINY_TRAIN, script_env

ROOT = Path(__file__).resolve().parents[1]


def test_plan_fragments_by_hand():
    assert plan_fragments(10, 4) == [Fragment(0, 4), Fragment(4, 4), Fragment(8, 2)]
    assert plan_fragments(10, 4, frame_start=2, n_frames=6) == [Fragment(2, 4), Fragment(6, 2)]
    assert plan_fragments(10, 20) == [Fragment(0, 10)]
    assert Fragment(150, 150).suffix == "_f00150"


@pytest.mark.parametrize("start, n, msg", [(8, 5, r"\[8, 13\) is past the video's end \(10 frames\)"),
                                           (12, -1, r"empty or negative frame range \[12, 10\)"),
                                           (-1, 3, "empty or negative")])
def test_plan_fragments_bad_ranges(start, n, msg):
    with pytest.raises(UserError, match=msg):
        plan_fragments(10, 4, start, n)
    with pytest.raises(UserError, match="fragment_len must be positive"):
        plan_fragments(10, 0)


def test_parse_devices():
    assert parse_devices("") == [] and parse_devices("cpu,cpu") == ["cpu", "cpu"]
    with pytest.raises(UserError, match="--gpus 'a,b'"):
        parse_devices("a,b")


def test_fragment_range_past_the_end_is_one_line_from_the_script(tiny_scene, tmp_path):
    out = subprocess.run([sys.executable, "-m", "tools.train_fragments", "--fragment_len", "2",
                          "--datadir", str(tiny_scene), "--basedir", str(tmp_path), "--frame_start", "2",
                          "--n_frames", "5"], capture_output=True, text=True, env=script_env())
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (f"error: {tiny_scene / 'frames'}: frame range [2, 7) is past the "
                                                   f"video's end (4 frames)")
    assert not any(tmp_path.iterdir())


def fragment_argv(tiny_scene, basedir, extra=()):
    return ["--datadir", str(tiny_scene), "--basedir", str(basedir), "--expname", "long", "--n_iters", "3",
            "--upsamp_list", "--update_AlphaMask_list", *TINY_TRAIN, "--n_variation_iters", "1", *extra]


@pytest.fixture(scope="module")
def trained_fragments(tiny_scene, tmp_path_factory):
    basedir = tmp_path_factory.mktemp("fragments")
    summary = train_fragments(fragment_argv(tiny_scene, basedir), 2, [])
    return basedir, summary


def test_fragments_train_one_after_another_as_normal_runs(trained_fragments):
    basedir, summary = trained_fragments
    assert sorted(p.name for p in basedir.iterdir()) == ["long_f00000", "long_f00002"]
    for start in (0, 2):
        state = load_checkpoint(basedir / f"long_f{start:05d}" / "ckpt.pt")
        assert state["step"] == 3 and state["config"]["frame_start"] == start and state["config"]["n_frames"] == 2
        assert state["model_config"]["n_frames"] == 2 and state["extra"]["cameras"]["frame_start"] == start
        assert (basedir / f"long_f{start:05d}" / "metrics.json").is_file()
    assert "trained 2 fragments of long (frames 0-3)" in summary and "--fragments" in summary


def test_rerun_skips_finished_fragments_and_finishes_unfinished_ones(trained_fragments, tiny_scene, caplog):
    basedir, _ = trained_fragments
    (basedir / "long_f00002" / "metrics.json").unlink()  # as if killed after the last checkpoint
    before = (basedir / "long_f00000" / "ckpt.pt").stat().st_mtime_ns
    with caplog.at_level("INFO"):
        train_fragments(fragment_argv(tiny_scene, basedir), 2, [])
    assert "long_f00000: already trained, skipped" in caplog.text
    assert "long_f00002: resuming" in caplog.text
    assert (basedir / "long_f00000" / "ckpt.pt").stat().st_mtime_ns == before
    assert (basedir / "long_f00002" / "metrics.json").is_file()


def test_render_fragments_stitches_in_frame_order(trained_fragments, tmp_path):
    basedir, _ = trained_fragments
    ckpts = [str(basedir / f"long_f{s:05d}" / "ckpt.pt") for s in (0, 2)]
    req = VideoRequest(ckpt=ckpts[1], cam_num=1, device="cpu", progress=False, out_dir=str(tmp_path))
    summary = render_fragments(req, [ckpts[0]])  # given out of order on purpose
    out = tmp_path / "cam01_rgb.mp4"
    assert summary.endswith(f"into {out}") and "frames 0-3" in summary
    joined = list(read_video(out))
    parts = [list(read_video(tmp_path / f"long_f{s:05d}" / "cam01_rgb.mp4")) for s in (0, 2)]
    assert len(joined) == 4 and all(len(p) == 2 for p in parts)
    for a, b in zip(joined, parts[0] + parts[1]):
        np.testing.assert_array_equal(a, b)  # stream copy: identical decoded frames, in frame order


def test_stitch_refuses_videos_of_different_sizes(tmp_path):
    write_video(tmp_path / "a.mp4", np.zeros((2, 16, 16, 3), np.uint8))
    write_video(tmp_path / "b.mp4", np.zeros((2, 32, 16, 3), np.uint8))
    with pytest.raises(UserError, match="different sizes"):
        stitch_videos([tmp_path / "a.mp4", tmp_path / "b.mp4"], tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()


def test_one_process_per_device(tiny_scene, tmp_path):
    """The --gpus path (torch.multiprocessing spawn, one process per device), exercised with two CPU 'devices'."""
    summary = train_fragments(fragment_argv(tiny_scene, tmp_path, ["--render_test", "0", "--n_iters", "2"]), 2,
                              ["cpu", "cpu"])
    assert "trained 2 fragments" in summary
    for start in (0, 2):
        assert load_checkpoint(tmp_path / f"long_f{start:05d}" / "ckpt.pt")["step"] == 2

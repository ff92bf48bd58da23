"""Crash safety and reproducibility: exact resume (after SIGKILL and SIGTERM), atomic checkpoints,
resumable frame-cache builds, clear errors for bad resume input, environment records."""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import engine.checkpoint as checkpoint_mod
from core.errors import UserError
from dataLoader import frame_cache
from dataLoader.scene_layout import SceneDir
from engine.checkpoint import load_checkpoint
from engine.train.signals import StopRequest, TrainingInterrupted
from engine.train.trainer import Trainer
from engine.workflow import finish_training
from tests.conftest import TINY_TRAIN, tiny_config

ROOT = Path(__file__).resolve().parents[1]
N_ITERS, UPSAMPLE_AT, ALPHA_AT = 12, (4, 9), (6,)
SCHEDULE = dict(n_iters=N_ITERS, upsamp_list=UPSAMPLE_AT, alpha_mask_list=ALPHA_AT)


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def run_config(tiny_scene, basedir, name, extra=()):
    return tiny_config(tiny_scene, basedir, name, extra=["--render_test", "1", "--n_test_images", "1", *extra],
                       **SCHEDULE)


def train_and_finish(cfg) -> tuple[Trainer, dict]:
    trainer = Trainer(cfg)
    ckpt = trainer.fit()
    finish_training(trainer, ckpt)
    return trainer, json.loads((trainer.run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def full_run(tiny_scene, tmp_path_factory):
    """One uninterrupted tiny run (CPU, seed 0) with test metrics."""
    basedir = tmp_path_factory.mktemp("resume_runs")
    trainer, metrics = train_and_finish(run_config(tiny_scene, basedir, "full"))
    return {"trainer": trainer, "metrics": metrics, "basedir": basedir}


# ---------------------------------------------------------------------- reproducibility
def test_same_seed_same_config_gives_identical_metrics(full_run, tiny_scene):
    trainer, metrics = train_and_finish(run_config(tiny_scene, full_run["basedir"], "again"))
    assert metrics["test"] == full_run["metrics"]["test"]
    assert_same_weights(trainer.model.state_dict(), full_run["trainer"].model.state_dict())


def test_run_records_versions_in_metrics_and_checkpoint(full_run):
    run_dir = full_run["trainer"].run_dir
    env = load_checkpoint(run_dir / "ckpt.pt")["extra"]["environment"]
    assert env["torch"] == torch.__version__ and env["numpy"] == np.__version__
    assert env["toolkit_commit"] and env["toolkit_commit"] != "unknown"  # the tests run inside the git checkout
    assert json.loads((run_dir / "metrics.json").read_text())["environment"]["torch"] == torch.__version__


# ---------------------------------------------------------------------- SIGTERM: save, exit, resume exactly
def test_sigterm_saves_exits_and_resume_matches_the_uninterrupted_run(full_run, tiny_scene):
    basedir = full_run["basedir"]
    trainer = Trainer(run_config(tiny_scene, basedir, "term"))
    step_hook = trainer.after_step

    def after_step():
        step_hook()
        if trainer.step == 5:
            os.kill(os.getpid(), signal.SIGTERM)

    trainer.after_step = after_step
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match=r"SIGTERM at iteration 5/12: checkpoint saved to .*ckpt.pt; "
                                                  r"continue with --resume 1 --ckpt") as info:
        trainer.fit()
    assert isinstance(info.value, UserError) and "\n" not in str(info.value)  # one line, exit code 2
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored
    ckpt = basedir / "term" / "ckpt.pt"
    assert load_checkpoint(ckpt)["step"] == 5
    resumed, metrics = train_and_finish(run_config(tiny_scene, basedir, "term", ["--resume", "1", "--ckpt", str(ckpt)]))
    assert metrics["test"] == full_run["metrics"]["test"]
    assert_same_weights(resumed.model.state_dict(), full_run["trainer"].model.state_dict())
    ref = full_run["trainer"].history
    assert resumed.history["loss"] == ref["loss"] and resumed.history["iteration"] == ref["iteration"]


def test_stop_request_second_signal_gets_the_previous_handler():
    calls = []
    previous = signal.signal(signal.SIGUSR1, lambda *a: calls.append("old"))
    try:
        with StopRequest(signals=(signal.SIGUSR1,)) as stop:
            os.kill(os.getpid(), signal.SIGUSR1)
            assert stop.signal == signal.SIGUSR1 and stop.name == "SIGUSR1" and calls == []
            os.kill(os.getpid(), signal.SIGUSR1)
            assert calls == ["old"]
        os.kill(os.getpid(), signal.SIGUSR1)
        assert calls == ["old", "old"]
    finally:
        signal.signal(signal.SIGUSR1, previous)


# ---------------------------------------------------------------------- SIGKILL of a real training process
def train_cmd(tiny_scene, basedir, name, extra=()):
    argv = ["--datadir", str(tiny_scene), "--basedir", str(basedir), "--expname", name, "--n_iters", str(N_ITERS),
            "--upsamp_list", *map(str, UPSAMPLE_AT), "--update_AlphaMask_list", *map(str, ALPHA_AT), *TINY_TRAIN,
            "--render_test", "1", "--n_test_images", "1", *extra]
    return [sys.executable, str(ROOT / "train.py"), *argv]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(tiny_scene, tmp_path):
    subprocess.run(train_cmd(tiny_scene, tmp_path, "ref"), env=ENV, check=True, capture_output=True)
    cmd = train_cmd(tiny_scene, tmp_path, "killed", ["--save_every", "3"])
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "killed" / "ckpt.pt"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = load_checkpoint(ckpt)["step"]  # a complete, loadable checkpoint whatever the moment of the kill
    assert 3 <= step < N_ITERS, "the run finished before it could be killed"
    assert not (tmp_path / "killed" / "metrics.json").exists()
    done = subprocess.run([*cmd, "--resume", "1", "--ckpt", str(ckpt)], env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    ref, res = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("ref", "killed"))
    assert res["test"] == ref["test"] and res["iterations"] == ref["iterations"] == N_ITERS
    ref_state = load_checkpoint(tmp_path / "ref" / "ckpt.pt")["state_dict"]
    assert_same_weights(load_checkpoint(ckpt)["state_dict"], ref_state)


# ---------------------------------------------------------------------- bad resume input, full disk
def test_truncated_checkpoint_is_refused_on_resume(full_run, tiny_scene, tmp_path):
    cut = tmp_path / "cut" / "ckpt.pt"
    cut.parent.mkdir()
    data = (full_run["trainer"].run_dir / "ckpt.pt").read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(UserError, match=r"cut/ckpt.pt: checkpoint is truncated or corrupt"):
        Trainer(run_config(tiny_scene, tmp_path, "cut", ["--resume", "1", "--ckpt", str(cut)]))


def test_resume_with_a_different_config_names_the_keys(full_run, tiny_scene):
    ckpt = full_run["trainer"].run_dir / "ckpt.pt"
    cfg = run_config(tiny_scene, full_run["basedir"], "full",
                     ["--resume", "1", "--ckpt", str(ckpt), "--batch_size", "128", "--lr_init", "0.05"])
    with pytest.raises(UserError, match=r"ckpt.pt: checkpoint was trained with a different config; differing keys: "
                                        r"batch_size \(checkpoint 256, now 128\), "
                                        r"lr_init \(checkpoint 0.02, now 0.05\)"):
        Trainer(cfg)


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(full_run, monkeypatch):
    trainer = full_run["trainer"]
    ckpt = trainer.run_dir / "ckpt.pt"
    before = ckpt.read_bytes()

    def full_disk(obj, fh):
        fh.write(b"\0" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_mod.torch, "save", full_disk)
    with pytest.raises(UserError, match=r"ckpt.pt: cannot write \(disk full\); the previous file is intact"):
        trainer.save()
    assert ckpt.read_bytes() == before
    assert [p.name for p in trainer.run_dir.iterdir() if ".tmp" in p.name] == []


# ---------------------------------------------------------------------- interrupted preprocessing
def test_interrupted_cache_build_continues_and_matches_a_clean_build(scene_copy, tiny_scene, tmp_path, monkeypatch):
    src = frame_cache.scan_frames(scene_copy)
    n_cams, n_t = len(src.files), len(src.files[0])
    real_read, reads = frame_cache.read_frame, []

    def failing_read(path, hw, source_hw=None):
        if len(reads) == 2 * n_t + 1:  # two cameras finished, the third in progress
            raise KeyboardInterrupt
        reads.append(path)
        return real_read(path, hw, source_hw)

    monkeypatch.setattr(frame_cache, "read_frame", failing_read)
    with pytest.raises(KeyboardInterrupt):
        frame_cache.build_cache(scene_copy, src, 1.0, 1)
    key = frame_cache.cache_key(src, 1.0, 1)
    assert not (SceneDir(scene_copy).cache / key).exists()  # nothing half-built is in place
    assert sorted(p.name for p in (SceneDir(scene_copy).cache / f".tmp-{key}" / "done").iterdir()) == ["0", "1"]

    reads.clear()
    monkeypatch.setattr(frame_cache, "read_frame",
                        lambda path, hw, src_hw=None: reads.append(path) or real_read(path, hw, src_hw))
    out = frame_cache.build_cache(scene_copy, src, 1.0, 1)
    assert len(reads) == (n_cams - 2) * n_t  # continued: only the unfinished cameras were decoded
    assert not (SceneDir(scene_copy).cache / f".tmp-{key}").exists()

    clean = tmp_path / "clean"
    shutil.copytree(tiny_scene, clean, ignore=shutil.ignore_patterns("cache"))
    ref = frame_cache.build_cache(clean, frame_cache.scan_frames(clean), 1.0, 1)
    for name in ("frames.npy", "std.npy"):
        np.testing.assert_array_equal(np.load(out / name), np.load(ref / name))


def test_partial_build_of_other_settings_is_not_reused(scene_copy):
    src = frame_cache.scan_frames(scene_copy)
    key = frame_cache.cache_key(src, 1.0, 1)
    tmp = SceneDir(scene_copy).cache / f".tmp-{key}"
    (tmp / "done").mkdir(parents=True)
    for k in range(len(src.files)):  # claims every camera is done, but with a foreign plan
        (tmp / "done" / str(k)).write_text("")
        np.save(tmp / f"std_{k:04d}.npy", np.zeros((24, 32), np.float32))
    (tmp / "build.json").write_text(json.dumps({"version": -1}))
    np.save(tmp / "frames.npy", np.zeros((len(src.files), 24, 32, 4, 3), np.uint8))
    out = frame_cache.build_cache(scene_copy, src, 1.0, 1)
    assert np.load(out / "frames.npy").any() and np.load(out / "std.npy").any()


def test_cache_build_on_a_full_disk_is_one_clear_error(scene_copy, monkeypatch):
    usage = shutil.disk_usage(scene_copy)
    monkeypatch.setattr(frame_cache.shutil, "disk_usage", lambda p: usage._replace(free=1000))
    with pytest.raises(UserError, match=r"cache: the frame cache needs 0.0 GiB but only 0.0 GiB are free"):
        frame_cache.build_cache(scene_copy, frame_cache.scan_frames(scene_copy), 1.0, 1)
    assert [p.name for p in SceneDir(scene_copy).cache.iterdir() if not p.name.startswith(".")] == []

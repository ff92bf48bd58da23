"""Hostile inputs over every stage: each ends with exit code 2, ONE error line naming the file or flag, no
traceback, and every file that existed before byte-identical after.

Stages run as real child processes (``tests/stage_runner.py`` forks them from one warm interpreter, so
~50 runs cost seconds, not minutes). One tiny scene and two tiny runs (dynamic, static) are built once
per module; a case works on private copies of them. Full-disk and read-only cases mount a small tmpfs
(needs root; skipped otherwise, saying so).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from dataLoader.atomic_io import save_npz, write_png, write_video
from dataLoader.scene_layout import SceneDir
from engine.checkpoint import load_checkpoint, to_plain
from synthetic.keypoints import gt_keypoint_table
from tests.conftest import TINY_TRAIN
from tests.stage_runner import StageRunner

try:
    import fcntl
except ImportError:
    fcntl = None

SCHEDULE = ["--n_iters", "4", "--upsamp_list", "100", "--update_AlphaMask_list", "100"]
LOG_LINE = re.compile(r"^[DIW] [\w.]+: ")  # what engine.cli's logging prints; anything else is suspect


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def runner():
    r = StageRunner()
    yield r
    r.close()


@pytest.fixture(scope="module")
def world(runner, tiny_scene, tmp_path_factory) -> Path:
    """scene/ (with its frame cache), run/ (4 dynamic iterations), static/ (4 static iterations)."""
    root = tmp_path_factory.mktemp("bad_inputs")
    shutil.copytree(tiny_scene, root / "scene", ignore=shutil.ignore_patterns("cache"))
    for name, extra in (("run", []), ("static", ["--datadir", root / "scene" / "static", "--static_only", "1",
                                                 "--test_cams", "--scene_box", "-1.5", "-1.5", "-1"])):
        res = runner.run("train.py", ["--datadir", root / "scene", "--basedir", root, "--expname", name,
                                      *SCHEDULE, *TINY_TRAIN, *extra])
        assert res.rc == 0, res.stderr
    return root


@dataclass
class Ctx:
    tmp: Path
    scene: Path
    run: Path
    static: Path
    marker: Path
    values: dict = field(default_factory=dict)  # paths a case's preparation made
    stack: contextlib.ExitStack | None = None  # mounts and locks held while the case runs

    @property
    def ckpt(self) -> Path:
        return self.run / "ckpt.pt"

    def train(self, *extra, expname: str = "x") -> list:
        return ["--datadir", self.scene, "--basedir", self.tmp / "runs", "--expname", expname, *SCHEDULE,
                *TINY_TRAIN, *extra]

    def evil(self) -> Path:
        """A checkpoint whose pickle runs ``touch marker`` when unpickled without weights_only."""
        path = self.tmp / "evil.pt"
        torch.save({"format": "mixvoxels-depth", "version": 2, "x": _Payload(str(self.marker))}, path)
        return path


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# ----------------------------------------------------------------------------- tmpfs (root only)
@contextlib.contextmanager
def tmpfs(path: Path, size: str = "2m"):
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"full-disk/read-only case needs a small tmpfs and root may not mount one here "
                    f"({proc.stderr.strip() or 'mount failed'})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(folder: Path) -> None:
    """Leave no free byte on the file system of ``folder``."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (1 << 16, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * chunk)
    finally:
        os.close(fd)


def read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


# ----------------------------------------------------------------------------- case preparations
def poses_row(ctx: Ctx, change: Callable[[np.ndarray], np.ndarray]) -> None:
    path = SceneDir(ctx.scene).poses
    arr = np.load(path)
    mats = arr[1, :15].reshape(3, 5)
    mats[:, :3] = change(mats[:, :3])
    arr[1, :15] = mats.reshape(15)
    np.save(path, arr)


def colmap_table(ctx: Ctx, shift: float = 1.0, drop_c2w: bool = False) -> None:
    names = [f"cam{k:02d}" for k in range(4)]
    table = gt_keypoint_table(ctx.scene, names, (24, 32), n_per_cam=20)
    table["c2w"] = table["c2w"].copy()
    table["c2w"][:, :, 3] += shift  # the same cameras in another SfM world
    if drop_c2w:
        del table["c2w"]
    save_npz(SceneDir(ctx.scene).sparse_depth, **table)


def hold_lock(ctx: Ctx) -> None:
    """This test process holds RUN/.lock (with its pid in it) while the case runs."""
    if fcntl is None:
        pytest.skip("no fcntl on this platform: run directories are not locked")
    fh = ctx.stack.enter_context(open(ctx.run / ".lock", "w"))
    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    fh.write(f"{os.getpid()}\n")
    fh.flush()


def fragment_of_another_scene(ctx: Ctx) -> Path:
    state = load_checkpoint(ctx.ckpt)
    state["config"]["datadir"] = str(ctx.tmp / "another_scene")
    state["extra"]["cameras"]["frame_start"] = 4
    (ctx.tmp / "other_f00004").mkdir()
    torch.save(to_plain(state), ctx.tmp / "other_f00004" / "ckpt.pt")
    return ctx.tmp / "other_f00004" / "ckpt.pt"


def stale_fragment(ctx: Ctx) -> None:
    """A finished-looking fragment run x_f00000 trained with another learning rate."""
    shutil.copytree(ctx.run, ctx.tmp / "runs" / "x_f00000")


def ro_scene(ctx: Ctx) -> Path:
    mnt = ctx.tmp / "ro"
    ctx.stack.enter_context(tmpfs(mnt))
    shutil.copytree(ctx.scene, mnt / "scene", ignore=shutil.ignore_patterns("cache"))
    read_only(mnt)
    return mnt / "scene"


def full_dir(ctx: Ctx, size: str = "1m") -> Path:
    mnt = ctx.tmp / "full"
    ctx.stack.enter_context(tmpfs(mnt, size))
    return mnt


def full_video_scene(ctx: Ctx) -> Path:
    """A scene folder on a full tmpfs whose videos/ link to real videos elsewhere."""
    videos = ctx.tmp / "videos"
    frames = np.random.default_rng(0).integers(0, 255, (6, 48, 64, 3), dtype=np.uint8)
    for cam in ("cam00", "cam01"):
        write_video(videos / f"{cam}.mp4", frames, fps=5)
    mnt = full_dir(ctx)
    (mnt / "scene").mkdir()
    (mnt / "scene" / "videos").symlink_to(videos)
    fill(mnt)
    return mnt / "scene"


def replace_frame(ctx: Ctx, rel: str, shape) -> None:
    write_png(SceneDir(ctx.scene).frames / rel, np.zeros(shape, np.uint8))


def prep(fn, *a, **kw):
    return lambda ctx: fn(ctx, *a, **kw)


def truncated_copy(ctx: Ctx) -> Path:
    data = ctx.ckpt.read_bytes()
    (ctx.tmp / "cut.pt").write_bytes(data[: len(data) // 2])
    return ctx.tmp / "cut.pt"


# ----------------------------------------------------------------------------- the table
@dataclass
class Case:
    id: str
    script: str
    args: Callable[[Ctx], list]
    names: Callable[[Ctx], str]  # substring the error line must contain (the file or the flag)
    prepare: Callable[[Ctx], object] | None = None


CASES = [
    # --- train.py: flags
    Case("train batch_size 0", "train.py", lambda c: c.train("--batch_size", "0"), lambda c: "--batch_size"),
    Case("train save_every 0", "train.py", lambda c: c.train("--save_every", "0"), lambda c: "--save_every"),
    Case("train downsample 0", "train.py", lambda c: c.train("--downsample_train", "0"),
         lambda c: "--downsample_train"),
    Case("train downsample 100", "train.py", lambda c: c.train("--downsample_train", "100"),
         lambda c: "--downsample_train"),
    Case("train scene_box 1 1 1", "train.py", lambda c: c.train("--scene_box", "1", "1", "1"),
         lambda c: "--scene_box"),
    Case("train device gpu0", "train.py", lambda c: c.train("--device", "gpu0"), lambda c: "--device"),
    Case("train lr_init nan", "train.py", lambda c: c.train("--lr_init", "nan"), lambda c: "--lr_init"),
    Case("train depth_lambda inf", "train.py",
         lambda c: c.train("--depth_source", "static_model", "--depth_lambda", "inf"),
         lambda c: "--depth_lambda"),
    Case("train n_iters 0", "train.py", lambda c: c.train("--n_iters", "0"), lambda c: "--n_iters"),
    Case("train n_iters -5", "train.py", lambda c: c.train("--n_iters", "-5"), lambda c: "--n_iters"),
    Case("train unknown flag", "train.py", lambda c: c.train("--no_such_flag", "1"), lambda c: "no_such_flag"),
    Case("train binary config", "train.py", lambda c: ["--config", c.tmp / "bin.txt", *c.train()],
         lambda c: "bin.txt", lambda c: (c.tmp / "bin.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 20)),
    Case("train basedir is a file", "train.py", lambda c: [*c.train(), "--basedir", c.tmp / "afile"],
         lambda c: "afile", lambda c: (c.tmp / "afile").write_text("not a folder")),
    Case("train scene_box misses the scene (bounded)", "train.py",
         lambda c: c.train("--ndc_ray", "0", "--scene_box", "-1.5", "-1.5", "-1"), lambda c: "--scene_box"),
    Case("train test_cams out of range", "train.py", lambda c: c.train("--test_cams", "9"), lambda c: "test_cams"),
    # --- train.py: scene files
    Case("train mirrored camera", "train.py", lambda c: c.train(), lambda c: "poses_bounds.npy",
         prep(poses_row, lambda r: r * np.array([1.0, 1.0, -1.0]))),
    Case("train sheared camera", "train.py", lambda c: c.train(), lambda c: "poses_bounds.npy",
         prep(poses_row, lambda r: r @ np.array([[1.0, 0.4, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))),
    Case("train resized later frame", "train.py", lambda c: c.train(), lambda c: "cam01/0002.png",
         prep(replace_frame, "cam01/0002.png", (12, 16, 3))),
    Case("train transposed later frame", "train.py", lambda c: c.train(), lambda c: "cam02/0003.png",
         prep(replace_frame, "cam02/0003.png", (32, 24, 3))),
    Case("train zero-byte frame", "train.py", lambda c: c.train(), lambda c: "cam01/0001.png",
         lambda c: (SceneDir(c.scene).frames / "cam01" / "0001.png").write_bytes(b"")),
    Case("train colmap_depth from another world", "train.py",
         lambda c: c.train("--depth_source", "colmap"), lambda c: "colmap_depth.npz",
         prep(colmap_table)),
    Case("train colmap_depth without poses", "train.py",
         lambda c: c.train("--depth_source", "colmap"), lambda c: "colmap_depth.npz",
         prep(colmap_table, 0.0, True)),
    Case("train read-only scene dir", "train.py", lambda c: [*c.train(), "--datadir", c.values["ro"]],
         lambda c: "cache", lambda c: c.values.update(ro=ro_scene(c))),
    # --- train.py: run directories, resume, locks
    Case("train existing run without overwrite", "train.py", lambda c: [*c.train(), "--basedir", c.tmp,
                                                                         "--expname", "run"], lambda c: str(c.run)),
    Case("train resume into another run's dir", "train.py",
         lambda c: ["--resume", "1", "--ckpt", c.ckpt, "--expname", "other", "--basedir", c.tmp],
         lambda c: str(c.tmp / "other"), lambda c: shutil.copytree(c.run, c.tmp / "other")),
    Case("train resume with another config", "train.py",
         lambda c: ["--resume", "1", "--ckpt", c.ckpt, "--batch_size", "128"], lambda c: "batch_size"),
    Case("train resume truncated checkpoint", "train.py", lambda c: ["--resume", "1", "--ckpt", c.values["cut"]],
         lambda c: "cut.pt", lambda c: c.values.update(cut=truncated_copy(c))),
    Case("train resume crafted pickle", "train.py", lambda c: ["--resume", "1", "--ckpt", c.evil()],
         lambda c: "evil.pt"),
    Case("train run dir locked by another process", "train.py",
         lambda c: [*c.train(), "--basedir", c.tmp, "--expname", "run", "--overwrite", "1"],
         lambda c: f"pid {os.getpid()}", hold_lock),
    Case("train non-finite loss", "train.py", lambda c: c.train("--lr_init", "1e30", "--save_every", "1",
                                                                 "--n_iters", "8"), lambda c: "--lr_init"),
    Case("train full disk", "train.py", lambda c: [*c.train(), "--basedir", c.values["full"]],
         lambda c: "disk full", lambda c: c.values.update(full=_filled(c))),
    Case("train_fragments with a changed config", "tools/train_fragments.py",
         lambda c: ["--fragment_len", "4", *c.train("--lr_init", "0.05", "--n_frames", "4")], lambda c: "x_f00000",
         stale_fragment),
    # --- render_one_video.py
    Case("render existing video", "render_one_video.py", lambda c: ["--ckpt", c.ckpt, "--device", "cpu"],
         lambda c: "cam00_rgb.mp4", lambda c: (c.run / "videos").mkdir() or (c.run / "videos" / "cam00_rgb.mp4")
         .write_bytes(b"an older render")),
    Case("render existing PNG folder", "render_one_video.py",
         lambda c: ["--ckpt", c.ckpt, "--device", "cpu", "--png", "1"], lambda c: "cam00_rgb",
         lambda c: (c.run / "videos" / "cam00_rgb").mkdir(parents=True)
         or (c.run / "videos" / "cam00_rgb" / "0000.png").write_bytes(b"old")),
    Case("render crafted pickle", "render_one_video.py", lambda c: ["--ckpt", c.evil(), "--device", "cpu"],
         lambda c: "evil.pt"),
    Case("render device gpu0", "render_one_video.py", lambda c: ["--ckpt", c.ckpt, "--device", "gpu0"],
         lambda c: "--device"),
    Case("render frames 5:2", "render_one_video.py", lambda c: ["--ckpt", c.ckpt, "--device", "cpu",
                                                                "--frames", "5:2"], lambda c: "--frames"),
    Case("render cam_num 9", "render_one_video.py", lambda c: ["--ckpt", c.ckpt, "--device", "cpu",
                                                               "--cam_num", "9"], lambda c: "--cam_num"),
    Case("render full disk", "render_one_video.py",
         lambda c: ["--ckpt", c.ckpt, "--device", "cpu", "--png", "1", "--out_dir", c.values["full"]],
         lambda c: "disk full", lambda c: c.values.update(full=_filled(c))),
    Case("render full disk (video only)", "render_one_video.py",
         lambda c: ["--ckpt", c.ckpt, "--device", "cpu", "--out_dir", c.values["full"]],
         lambda c: "cam00_rgb.mp4", lambda c: c.values.update(full=_filled(c))),
    Case("render fragments of two scenes", "render_one_video.py",
         lambda c: ["--ckpt", c.ckpt, "--device", "cpu", "--fragments", c.values["frag"], "--out_dir", c.tmp / "o"],
         lambda c: "other_f00004", lambda c: c.values.update(frag=fragment_of_another_scene(c))),
    # --- tools/evaluate.py
    Case("evaluate 2-frame gt_depth", "tools/evaluate.py",
         lambda c: ["--ckpt", c.ckpt, "--datadir", c.scene, "--device", "cpu"], lambda c: "gt_depth/cam00.npy",
         lambda c: np.save(SceneDir(c.scene).gt_depth("cam00"), np.load(SceneDir(c.scene).gt_depth("cam00"))[:2])),
    Case("evaluate crafted pickle", "tools/evaluate.py", lambda c: ["--ckpt", c.evil(), "--device", "cpu"],
         lambda c: "evil.pt"),
    # --- static_model2depth.py
    Case("static_model2depth read-only datadir", "static_model2depth.py",
         lambda c: ["--ckpt", c.static / "ckpt.pt", "--datadir", c.values["ro"], "--device", "cpu",
                    "--allow_inconsistent", "1", "--acc_min", "0", "--spread_max", "100"],  # a 4-iteration model:
         # nearly transparent and inconsistent, exported anyway, so that only the write may fail here
         lambda c: "all_depth.npz", lambda c: c.values.update(ro=ro_scene(c))),
    Case("static_model2depth dynamic checkpoint", "static_model2depth.py",
         lambda c: ["--ckpt", c.ckpt, "--datadir", c.scene, "--device", "cpu"], lambda c: "ckpt.pt"),
    Case("static_model2depth crafted pickle", "static_model2depth.py",
         lambda c: ["--ckpt", c.evil(), "--datadir", c.scene, "--device", "cpu"], lambda c: "evil.pt"),
    # --- colmap2depth.py
    Case("colmap2depth out is a folder", "colmap2depth.py", lambda c: [c.scene, "--out", SceneDir(c.scene).frames],
         lambda c: "--out"),
    Case("colmap2depth existing output", "colmap2depth.py", lambda c: [c.scene], lambda c: "colmap_depth.npz",
         lambda c: SceneDir(c.scene).sparse_depth.write_bytes(b"an older table")),
    # --- tools/make_synthetic_scene.py
    Case("make_synthetic_scene onto a file", "tools/make_synthetic_scene.py", lambda c: [c.tmp / "afile"],
         lambda c: "afile", lambda c: (c.tmp / "afile").write_text("x")),
    Case("make_synthetic_scene existing scene", "tools/make_synthetic_scene.py", lambda c: [c.scene],
         lambda c: str(c.scene)),
    Case("make_synthetic_scene full disk", "tools/make_synthetic_scene.py",
         lambda c: [c.values["full"] / "new", "--n_cams", "2", "--n_frames", "2", "--width", "16", "--height", "12",
                    "--n_static_views", "0", "--supersample", "1"], lambda c: "disk full",
         lambda c: c.values.update(full=_filled(c))),
    # --- tools/prepare_video.py
    Case("prepare_video full disk", "tools/prepare_video.py", lambda c: [c.values["scene"]], lambda c: "disk full",
         lambda c: c.values.update(scene=full_video_scene(c))),
    Case("prepare_video no videos", "tools/prepare_video.py", lambda c: [c.tmp / "empty"], lambda c: "empty",
         lambda c: (c.tmp / "empty").mkdir()),
]


def _filled(ctx: Ctx) -> Path:
    mnt = full_dir(ctx)
    fill(mnt)
    return mnt


def snapshot(root: Path) -> dict[Path, str]:
    return {p: hashlib.sha1(p.read_bytes()).hexdigest() for p in root.rglob("*")
            if p.is_file() and not p.is_symlink()}


def assert_one_error_line(stderr: str, must_name: str) -> str:
    assert "Traceback" not in stderr, stderr
    plain = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", stderr)  # progress bars' cursor moves
    lines = [line for line in plain.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    others = [line for line in lines[:-1] if not LOG_LINE.match(line) and "%|" not in line and "/s]" not in line]
    assert not others, f"stray stderr lines {others}"
    assert must_name in errors[0], errors[0]
    return errors[0]


def test_the_table_is_large_enough():
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, runner, world, tmp_path):
    scene = tmp_path / "scene"
    shutil.copytree(world / "scene", scene, symlinks=True)
    shutil.copytree(world / "run", tmp_path / "run")
    shutil.copytree(world / "static", tmp_path / "static")
    ctx = Ctx(tmp_path, scene, tmp_path / "run", tmp_path / "static", tmp_path / "payload_ran")
    with contextlib.ExitStack() as stack:
        ctx.stack = stack
        if case.prepare is not None:
            case.prepare(ctx)
        args = case.args(ctx)
        before = snapshot(tmp_path)
        res = runner.run(case.script, args)
        assert res.rc == 2, f"exit {res.rc}\n{res.stderr}"
        assert_one_error_line(res.stderr, case.names(ctx))
        after = snapshot(tmp_path)
        changed = [str(p) for p, h in before.items() if after.get(p) != h]
        assert not changed, f"pre-existing files changed or removed: {changed}"
    assert not ctx.marker.exists(), "a crafted checkpoint ran its payload"


# ----------------------------------------------------------------------------- beyond the table
def test_crafted_pickle_is_refused_without_running(tmp_path):
    ctx = Ctx(tmp_path, tmp_path, tmp_path, tmp_path, tmp_path / "payload_ran")
    from core.errors import UserError

    with pytest.raises(UserError, match="evil.pt: refused"):
        load_checkpoint(ctx.evil())
    assert not ctx.marker.exists()


def test_non_finite_loss_keeps_the_last_good_checkpoint(runner, world, tmp_path):
    ctx = Ctx(tmp_path, world / "scene", world / "run", world / "static", tmp_path / "m")
    res = runner.run("train.py", ctx.train("--lr_init", "1e30", "--save_every", "1", "--n_iters", "8"))
    line = assert_one_error_line(res.stderr, "the loss became")
    assert res.rc == 2
    ckpt = tmp_path / "runs" / "x" / "ckpt.pt"
    if "last good checkpoint" in line:
        state = load_checkpoint(ckpt)
        assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())
    else:
        assert "no checkpoint was written" in line and not ckpt.exists()


def test_two_trainings_into_one_run_dir_cannot_both_proceed(runner, world, tmp_path):
    ctx = Ctx(tmp_path, world / "scene", world / "run", world / "static", tmp_path / "m")
    first = runner.spawn("train.py", ctx.train("--n_iters", "100000", "--n_variation_iters", "0"))
    lock = tmp_path / "runs" / "x" / ".lock"
    deadline = time.monotonic() + 120
    while not (lock.is_file() and lock.read_text().strip() == str(first)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lock.read_text().strip() == str(first)
    second = runner.run("train.py", ctx.train("--overwrite", "1"))
    os.kill(first, signal.SIGTERM)
    done = runner.wait(first)
    assert second.rc == 2
    assert_one_error_line(second.stderr, f"another training (pid {first})")
    assert done.rc == 2 and "SIGTERM at iteration" in done.stderr  # the first saved and stopped cleanly
    assert load_checkpoint(tmp_path / "runs" / "x" / "ckpt.pt")["step"] > 0


def test_sigint_during_the_variation_warm_up_stops_at_once(runner, world, tmp_path):
    ctx = Ctx(tmp_path, world / "scene", world / "run", world / "static", tmp_path / "m")
    pid = runner.spawn("train.py", ctx.train("--n_variation_iters", "1000000"))
    lock = tmp_path / "runs" / "x" / ".lock"
    deadline = time.monotonic() + 120
    while not (lock.is_file() and lock.read_text().strip() == str(pid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    os.kill(pid, signal.SIGINT)
    res = runner.wait(pid)
    assert res.rc == 2
    assert_one_error_line(res.stderr, "SIGINT during the variation warm-up")
    assert not (tmp_path / "runs" / "x" / "ckpt.pt").exists()


def test_truncated_frame_cache_is_rebuilt(runner, world, tmp_path):
    scene = tmp_path / "scene"
    shutil.copytree(world / "scene", scene)
    (frames,) = scene.glob("cache/*/frames.npy")
    frames.write_bytes(frames.read_bytes()[:1000])
    ctx = Ctx(tmp_path, scene, world / "run", world / "static", tmp_path / "m")
    res = runner.run("train.py", ctx.train())
    assert res.rc == 0, res.stderr
    assert "frame cache is damaged or incomplete; rebuilding it" in res.stderr
    assert np.load(frames).shape[0] == 4


def test_resume_from_the_checkpoint_alone_continues_in_its_run_dir(runner, world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world / "run", run)
    res = runner.run("train.py", ["--resume", "1", "--ckpt", run / "ckpt.pt", "--n_iters", "6"])
    assert res.rc == 0, res.stderr
    assert load_checkpoint(run / "ckpt.pt")["step"] == 6


def test_resume_with_a_new_expname_leaves_the_source_run_alone(runner, world, tmp_path):
    src = tmp_path / "other"
    shutil.copytree(world / "run", src)
    shutil.copy(src / "ckpt.pt", src / "ckpt_backup.pt")
    before = snapshot(src)
    res = runner.run("train.py", ["--resume", "1", "--ckpt", src / "ckpt_backup.pt", "--expname", "resumed_run",
                                  "--basedir", tmp_path, "--n_iters", "6"])
    assert res.rc == 0, res.stderr
    assert snapshot(src) == before
    assert load_checkpoint(tmp_path / "resumed_run" / "ckpt.pt")["step"] == 6


def test_overwrite_removes_the_previous_runs_outputs(runner, world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world / "run", run)
    (run / "videos").mkdir()
    (run / "videos" / "cam00_rgb.mp4").write_bytes(b"old")
    (run / "test").mkdir()
    (run / "test" / "cam00_frame0000.png").write_bytes(b"old")
    res = runner.run("train.py", ["--datadir", world / "scene", "--basedir", tmp_path, "--expname", "run",
                                  "--overwrite", "1", *SCHEDULE, *TINY_TRAIN])
    assert res.rc == 0, res.stderr
    assert not (run / "videos").exists() and not (run / "test").exists()


def test_full_disk_keeps_the_previous_file_intact(tmp_path):
    from core.errors import UserError
    from dataLoader.atomic_io import write_bytes

    with tmpfs(tmp_path / "mnt", "64k") as mnt:
        write_bytes(mnt / "f.bin", b"previous")
        fill(mnt)
        with pytest.raises(UserError, match=r"f.bin: cannot write \(disk full\); the previous file is intact"):
            write_bytes(mnt / "f.bin", b"x" * 200_000)
        assert (mnt / "f.bin").read_bytes() == b"previous"
        assert sorted(p.name for p in mnt.iterdir()) == ["f.bin", "filler"]
        assert errno.ENOSPC  # the reason above is ENOSPC from the kernel, not simulated


def test_ctrl_c_during_the_end_of_run_evaluation_is_one_line(monkeypatch, tmp_path):
    import engine.workflow as workflow
    from engine.train.signals import TrainingInterrupted

    def interrupted(trainer, ckpt):
        raise KeyboardInterrupt

    monkeypatch.setattr(workflow, "_finish_training", interrupted)
    with pytest.raises(TrainingInterrupted, match=r"SIGINT during the end-of-run evaluation: .*ckpt.pt is complete"):
        workflow.finish_training(None, tmp_path / "ckpt.pt")

"""dataLoader.atomic_io: every writer round-trips, leaves no temp file, and a failure keeps the old file."""
from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import torch

from core.errors import UserError
from dataLoader import atomic_io
from dataLoader.video_io import probe_video, read_png, read_video


def test_writers_round_trip_and_create_parents(tmp_path):
    d = tmp_path / "a" / "b"
    atomic_io.write_text(d / "t.txt", "héllo\n")
    atomic_io.write_json(d / "j.json", {"x": [1, 2]})
    atomic_io.save_npy(d / "a.npy", np.arange(6).reshape(2, 3))
    atomic_io.save_npz(d / "z.npz", compressed=True, a=np.ones(3), b=np.zeros((2, 2)))
    atomic_io.save_torch(d / "c.pt", {"w": torch.arange(4)})
    img = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    atomic_io.write_png(d / "i.png", img)
    frames = np.full((3, 8, 8, 3), 128, np.uint8)
    assert atomic_io.write_video(d / "v.mp4", frames, fps=5) == 3

    assert (d / "t.txt").read_text(encoding="utf-8") == "héllo\n"
    assert json.loads((d / "j.json").read_text()) == {"x": [1, 2]}
    np.testing.assert_array_equal(np.load(d / "a.npy"), np.arange(6).reshape(2, 3))
    with np.load(d / "z.npz") as z:
        np.testing.assert_array_equal(z["a"], np.ones(3))
    assert torch.equal(torch.load(d / "c.pt", weights_only=True)["w"], torch.arange(4))
    np.testing.assert_array_equal(read_png(d / "i.png"), img)
    assert len(list(read_video(d / "v.mp4"))) == 3 and probe_video(d / "v.mp4").width == 8
    assert sorted(p.name for p in d.iterdir()) == ["a.npy", "c.pt", "i.png", "j.json", "t.txt", "v.mp4", "z.npz"]


def test_failure_inside_the_block_keeps_the_previous_file(tmp_path):
    path = tmp_path / "f.json"
    atomic_io.write_json(path, {"v": 1})
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        with atomic_io.atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_os_error_becomes_one_line_user_error(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with pytest.raises(UserError) as err:
        with atomic_io.atomic_path(path):
            raise OSError(errno.ENOSPC, "No space left on device")
    msg = str(err.value)
    assert msg == f"{path}: cannot write (disk full); the previous file is intact"
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_parent_that_is_a_file_is_a_user_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="file/out.txt: cannot write"):
        atomic_io.write_text(tmp_path / "file" / "out.txt", "y")


def test_empty_video_is_refused_and_old_video_kept(tmp_path):
    path = tmp_path / "v.mp4"
    atomic_io.write_video(path, np.zeros((2, 8, 8, 3), np.uint8))
    before = path.read_bytes()
    with pytest.raises(ValueError):
        atomic_io.write_video(path, [])
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


def test_atomic_dir_replaces_a_folder_only_when_complete(tmp_path):
    dest = tmp_path / "d"
    with atomic_io.atomic_dir(dest) as tmp:
        atomic_io.write_text(tmp / "a.txt", "1")
    with pytest.raises(UserError, match="exists"):
        with atomic_io.atomic_dir(dest):
            pass
    with pytest.raises(RuntimeError):
        with atomic_io.atomic_dir(dest, overwrite=True) as tmp:
            atomic_io.write_text(tmp / "b.txt", "2")
            raise RuntimeError("boom")
    assert [p.name for p in dest.iterdir()] == ["a.txt"] and [p.name for p in tmp_path.iterdir()] == ["d"]
    with atomic_io.atomic_dir(dest, overwrite=True) as tmp:
        atomic_io.write_text(tmp / "b.txt", "2")
    assert [p.name for p in dest.iterdir()] == ["b.txt"] and [p.name for p in tmp_path.iterdir()] == ["d"]


def test_stale_temp_of_a_dead_writer_is_removed(tmp_path):
    stale = tmp_path / ".f.tmp-999999999-abcdef.txt"
    stale.write_text("left by a killed process")
    atomic_io.write_text(tmp_path / "f.txt", "x")
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]

"""bench/gpu_check.py runs end to end (tiny size on CPU; the GPU default size is run by hand) and prints
the JSON the README describes."""
from __future__ import annotations

import json
import sys

import pytest
import torch

from bench import gpu_check

KEYS = {"device", "torch", "cuda", "amp", "precision", "iterations", "batch_size", "iterations_per_s", "rays_per_s",
        "peak_gpu_memory_gib", "test_psnr", "render_frames_per_s", "evaluation_s", "total_s"}


def test_gpu_check_tiny_run_prints_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--device", "cpu", "--n_cams", "3", "--n_frames", "4",
                                      "--distinct_frames", "2", "--size", "32", "24", "--iters", "4",
                                      "--workdir", str(tmp_path), "--n_variation_iters", "2", "--batch_size", "256"])
    gpu_check.main()
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert KEYS <= set(result)
    assert result["device"] == "cpu" and result["amp"] is False and result["iterations"] == 4
    assert result["scene"] == {"cameras": 3, "frames": 4, "distinct_frames": 2, "size": [32, 24]}
    assert result["batch_size"] == 256 and result["peak_gpu_memory_gib"] is None
    assert 5.0 < result["test_psnr"] < 60.0 and result["render_frames_per_s"] > 0
    # frame t shows rendered frame t * 2 // 4: frames 0, 1 are the same picture
    frames = sorted((tmp_path / "scene" / "frames" / "cam01").iterdir())
    assert [f.resolve().name for f in frames] == ["0000.png", "0000.png", "0001.png", "0001.png"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_check_small_run_on_cuda(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--device", "cuda", "--n_cams", "4", "--n_frames", "30",
                                      "--size", "96", "72", "--iters", "50", "--workdir", str(tmp_path),
                                      "--n_variation_iters", "20"])
    gpu_check.main()
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["amp"] is True and result["peak_gpu_memory_gib"] > 0 and result["test_psnr"] > 5.0

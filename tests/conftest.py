"""Shared fixtures: one tiny synthetic scene (written once per session) and tiny training configs.

Tests marked ``@pytest.mark.gpu`` are skipped when no CUDA device is present.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from engine import options
from synthetic.scene import write_scene

TINY_SCENE = dict(n_cams=4, n_frames=4, width=32, height=24, n_static_views=4, supersample=1, video=False)

# Tiny model/schedule settings; n_iters, upsamp_list and update_AlphaMask_list come from the caller.
TINY_TRAIN = [
    "--device", "cpu", "--seed", "0",
    "--batch_size", "256",
    "--N_voxel_init", str(32 ** 3), "--N_voxel_final", str(48 ** 3),
    "--n_lamb_sigma", "4", "2", "2", "--n_lamb_sh", "8", "4", "4",
    "--n_lamb_sigma_dynamic", "4", "2", "2", "--n_lamb_sh_dynamic", "8", "4", "4",
    "--app_dim", "12", "--data_dim_density", "12", "--data_dim_color", "12",
    "--featureC", "16", "--featureD", "16", "--static_featureC", "16",
    "--n_variation_iters", "5", "--render_test", "0", "--save_every", "100000",
    "--progress_refresh_rate", "1",
]

requires_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("gpu") is not None:  # not ``"gpu" in item.keywords``: folder names count
            item.add_marker(requires_gpu)


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory) -> Path:
    """A 4-camera, 4-frame, 32x24 synthetic scene (cam00 = test camera). Treat as read-only."""
    root = tmp_path_factory.mktemp("scene")
    write_scene(root / "tiny", **TINY_SCENE)
    return root / "tiny"


@pytest.fixture
def scene_copy(tiny_scene, tmp_path) -> Path:
    """A private, mutable copy of the tiny scene (without its frame cache)."""
    dst = tmp_path / "scene"
    shutil.copytree(tiny_scene, dst, ignore=shutil.ignore_patterns("cache"))
    return dst


def tiny_config(datadir: Path, basedir: Path, expname: str, n_iters: int = 20, upsamp_list=(8, 14),
                alpha_mask_list=(10,), extra: list[str] | None = None):
    """A resolved training config for the tiny scene (CPU, tiny grids)."""
    argv = ["--datadir", str(datadir), "--basedir", str(basedir), "--expname", expname,
            "--n_iters", str(n_iters),
            "--upsamp_list", *map(str, upsamp_list),
            "--update_AlphaMask_list", *map(str, alpha_mask_list),
            *TINY_TRAIN, *(extra or [])]
    return options.resolve(options.parse(argv))


@pytest.fixture(scope="session")
def make_cfg(tiny_scene, tmp_path_factory):
    """``make_cfg(expname, **kw)`` -> resolved config on the tiny scene, runs under a session tmp dir."""
    basedir = tmp_path_factory.mktemp("runs")

    def _make(expname: str, **kw):
        return tiny_config(tiny_scene, basedir, expname, **kw)

    return _make


def script_env() -> dict[str, str]:
    """Environment for running a stage script in a subprocess from a checkout that is not pip-installed:
    the repository root on PYTHONPATH (``pip install -e .`` makes this unnecessary)."""
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}

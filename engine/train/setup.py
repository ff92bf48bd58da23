"""Run setup helpers: device, seeding, run directory, model construction from a config."""
from __future__ import annotations

import platform
import random
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from core.errors import UserError
from engine.options import upgrade_config
from engine.train.schedule import n_to_reso
from models import build_model
from models.mixvoxels import ModelConfig

# Keys that may differ between a checkpoint's config and a resumed run.
RUN_CONTROL_KEYS = {"resume", "ckpt", "device", "amp", "render_budget_mb", "save_every", "progress_refresh_rate",
                    "overwrite",
                    "render_test", "n_test_images", "config", "base_config", "depth_config", "n_iters",
                    "basedir", "data_root", "datadir", "expname", "schedule",
                    "tensorboard", "vis_every", "n_vis"}


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name!r} requested but CUDA is not available")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"--device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                        f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    if device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        for i, s in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)


def toolkit_commit() -> str:
    """Short git commit of the toolkit, "+dirty" when tracked files differ from it; "unknown" outside git."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=root,
                              timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=root, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head + ("+dirty" if dirty else "")) if head else "unknown"


def environment() -> dict:
    """Versions that shaped a run (written to metrics.json and every checkpoint)."""
    env = {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
           "toolkit_commit": toolkit_commit()}
    if torch.cuda.is_available():
        env["cuda"] = torch.version.cuda
        env["gpu"] = torch.cuda.get_device_name()
    return env


def new_model(mcfg: ModelConfig, data, n_voxel_init: int, device):
    """A fresh model of the config's model keys over the dataset's aabb, ray space and frame count."""
    aabb = torch.as_tensor(data.normalization.aabb, dtype=torch.float32)
    mcfg = replace(mcfg, n_frames=1 if mcfg.static_only else data.n_frames, ndc=data.normalization.ndc,
                   near_far=data.near_far)
    return build_model("mixvoxels", mcfg, aabb, n_to_reso(n_voxel_init, aabb)).to(device)


def config_differences(saved: dict, current: dict) -> list[str]:
    """Keys (other than run control) whose values differ between two configs (seed-workflow keys upgraded)."""
    saved = upgrade_config(saved)
    keys = (set(saved) | set(current)) - RUN_CONTROL_KEYS
    return sorted(k for k in keys if _norm(saved.get(k)) != _norm(current.get(k)))


def describe_differences(saved: dict, current: dict, keys: list[str]) -> str:
    """"key (checkpoint X, now Y), ..." for the keys of :func:`config_differences`."""
    saved = upgrade_config(saved)
    return ", ".join(f"{k} (checkpoint {saved.get(k, '<unset>')}, now {current.get(k, '<unset>')})" for k in keys)


def _norm(v):
    return list(v) if isinstance(v, tuple) else v

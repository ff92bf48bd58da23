"""Run setup helpers: device, seeding, run directory, model construction from a config."""
from __future__ import annotations

import argparse
import platform
import random
import subprocess
from pathlib import Path

import numpy as np
import torch

from dataLoader.dataset import DataOptions
from dataLoader.depth_targets import DepthTargetOptions
from dataLoader.errors import UserError
from dataLoader.scene_layout import SceneDir
from engine.schedule import n_to_reso
from models import build_model
from models.mixvoxels import ModelConfig

# Keys that may differ between a checkpoint's config and a resumed run.
RUN_CONTROL_KEYS = {"resume", "ckpt", "device", "save_every", "progress_refresh_rate", "overwrite",
                    "render_test", "n_test_images", "config", "base_config", "depth_config", "n_iters",
                    "basedir", "data_root", "datadir", "expname"}


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"config: device {name!r} requested but CUDA is not available")
    return torch.device(name)


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
    root = Path(__file__).resolve().parents[1]
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


def depth_target_options(cfg: argparse.Namespace) -> DepthTargetOptions:
    if not cfg.use_depth:
        return DepthTargetOptions()
    source, path = ("colmap", cfg.colmap_depth_path) if cfg.use_colmap_depth else ("static_model",
                                                                                     cfg.depthmap_npy_path)
    return DepthTargetOptions(source, SceneDir(cfg.datadir).resolve(path), cfg.depth_sigma,
                              cfg.temporal_variance_threshold)


def data_options(cfg: argparse.Namespace, with_depth: bool = False) -> DataOptions:
    """The dataset's options; ``with_depth``: also the depth targets the config asks for (training)."""
    return DataOptions(
        datadir=Path(cfg.datadir), downsample=cfg.downsample_train, frame_start=cfg.frame_start,
        n_frames=cfg.n_frames, test_cams=tuple(cfg.test_cams), scene_box=tuple(cfg.scene_box),
        ndc=None if cfg.ndc_ray < 0 else bool(cfg.ndc_ray), std_blur_kernel=cfg.std_blur_kernel,
        depth=depth_target_options(cfg) if with_depth else DepthTargetOptions())


def model_config(cfg: argparse.Namespace, n_frames: int, ndc: bool, near_far: tuple[float, float]) -> ModelConfig:
    return ModelConfig(
        n_frames=1 if cfg.static_only else n_frames, static_only=bool(cfg.static_only), ndc=ndc,
        near_far=near_far,
        n_lamb_sigma=tuple(cfg.n_lamb_sigma), n_lamb_sh=tuple(cfg.n_lamb_sh),
        n_lamb_sigma_dynamic=tuple(cfg.n_lamb_sigma_dynamic), n_lamb_sh_dynamic=tuple(cfg.n_lamb_sh_dynamic),
        app_dim=cfg.app_dim, data_dim_density=cfg.data_dim_density, data_dim_color=cfg.data_dim_color,
        static_featureC=cfg.static_featureC, featureC=cfg.featureC, featureD=cfg.featureD,
        fea2denseAct=cfg.fea2denseAct, density_shift=cfg.density_shift, distance_scale=cfg.distance_scale,
        step_ratio=cfg.step_ratio, n_samples_max=cfg.nSamples, alpha_mask_thre=cfg.alpha_mask_thre,
        rm_weight_mask_thre=cfg.rm_weight_mask_thre, dynamic_threshold=cfg.dynamic_threshold,
        dynamic_granularity=cfg.dynamic_granularity,
        point_wise_dynamic_threshold=cfg.point_wise_dynamic_threshold,
        dynamic_pool_kernel_size=cfg.dynamic_pool_kernel_size)


def new_model(cfg: argparse.Namespace, data, device):
    """A fresh model over the dataset's aabb, ray space and frame count."""
    aabb = torch.as_tensor(data.normalization.aabb, dtype=torch.float32)
    mcfg = model_config(cfg, data.n_frames, data.normalization.ndc, data.near_far)
    return build_model("mixvoxels", mcfg, aabb, n_to_reso(cfg.N_voxel_init, aabb)).to(device)


def prepare_run_dir(cfg: argparse.Namespace) -> Path:
    """basedir/expname; refuses to reuse a directory holding another run unless overwrite or resume."""
    run_dir = Path(cfg.basedir) / cfg.expname
    if cfg.resume:
        return Path(cfg.ckpt).resolve().parent
    if (run_dir / "ckpt.pt").exists() and not cfg.overwrite:
        raise UserError(f"{run_dir}: a run with this name exists; choose --expname, or pass --overwrite 1 "
                        f"(or --resume 1 --ckpt {run_dir / 'ckpt.pt'})")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def config_differences(saved: dict, current: dict) -> list[str]:
    """Keys (other than run control) whose values differ between two configs."""
    keys = (set(saved) | set(current)) - RUN_CONTROL_KEYS
    return sorted(k for k in keys if _norm(saved.get(k)) != _norm(current.get(k)))


def describe_differences(saved: dict, current: dict, keys: list[str]) -> str:
    """"key (checkpoint X, now Y), ..." for the keys of :func:`config_differences`."""
    return ", ".join(f"{k} (checkpoint {saved.get(k, '<unset>')}, now {current.get(k, '<unset>')})" for k in keys)


def _norm(v):
    return list(v) if isinstance(v, tuple) else v

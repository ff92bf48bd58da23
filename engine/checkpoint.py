"""Self-describing checkpoints behind one loader (loading needs no config file).

A checkpoint holds the model hyper-parameters, grid resolution, aabb, alpha mask, the
scene normalization, the resolved config, the iteration, optimizer and RNG states.
Only tensors and plain Python data are stored (numpy arrays as tagged tensors, see
:func:`to_plain`), and loading uses ``torch.load(weights_only=True)``: a crafted pickle is
refused without running. Writes go through :mod:`dataLoader.atomic_io` (temp file, fsync, rename), so a crash (even
SIGKILL) or a full disk at any moment leaves the previous checkpoint intact.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from core.errors import UserError
from dataLoader.atomic_io import save_torch
from dataLoader.poses import SceneNormalization
from models import build_model
from models.alpha_mask import AlphaMask

CKPT_VERSION = 2  # 2: tensors and plain data only, loaded with weights_only=True
CKPT_FORMAT = "mixvoxels-depth"
NUMPY_TAG = "__numpy__"


def to_plain(obj):
    """Tensors and plain Python data only (what ``torch.load(weights_only=True)`` reads): numpy arrays
    become ``{NUMPY_TAG: tensor}``, numpy scalars Python numbers, str subclasses str; containers recursively."""
    if isinstance(obj, np.ndarray):
        return {NUMPY_TAG: torch.from_numpy(np.ascontiguousarray(obj))}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, str):
        return str(obj)  # str subclasses (torch.__version__) are not plain data
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj)
    return obj


def from_plain(obj):
    """Inverse of :func:`to_plain`."""
    if isinstance(obj, dict):
        if set(obj) == {NUMPY_TAG}:
            return obj[NUMPY_TAG].numpy()
        return {k: from_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(from_plain(v) for v in obj)
    return obj


def save_checkpoint(path: Path, model, normalization: SceneNormalization, config: dict, step: int,
                    optimizer=None, extra: dict | None = None) -> None:
    state = {
        "format": CKPT_FORMAT,
        "version": CKPT_VERSION,
        "model_config": model.cfg.to_dict(),
        "resolution": model.resolution,
        "aabb": model.aabb.detach().cpu(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "alpha_mask": model.alpha_mask.state_dict() if model.alpha_mask is not None else None,
        "normalization": normalization.to_dict(),
        "config": dict(config),
        "step": int(step),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "extra": extra or {},
    }
    save_torch(path, to_plain(state))


def load_checkpoint(path: str | Path) -> dict:
    """Read and validate a checkpoint (on CPU). Raises UserError for missing/corrupt/foreign files."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        state = from_plain(torch.load(path, map_location="cpu", weights_only=True))
    except pickle.UnpicklingError:
        raise UserError(f"{path}: refused: the file holds objects other than tensors and plain data "
                        f"(loading it could run code)") from None
    except Exception as exc:  # noqa: BLE001 - truncated zip, pickle errors, ...
        raise UserError(f"{path}: checkpoint is truncated or corrupt ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != CKPT_FORMAT:
        raise UserError(f"{path}: not a checkpoint of this toolkit")
    if state.get("version") != CKPT_VERSION:
        raise UserError(f"{path}: checkpoint version {state.get('version')} is not supported "
                        f"(this toolkit reads version {CKPT_VERSION})")
    return state


def model_from_state(state: dict, device="cpu"):
    """Rebuild the model exactly as saved."""
    model = build_model("mixvoxels", state["model_config"], state["aabb"], state["resolution"])
    model.load_state_dict(state["state_dict"])
    if state["alpha_mask"] is not None:
        model.alpha_mask = AlphaMask.from_state_dict(state["alpha_mask"])
    model.to(device)
    if model.alpha_mask is not None:
        model.alpha_mask = model.alpha_mask.to(device)
    return model


def load_model(path: str | Path, device="cpu"):
    """-> (model in eval mode, SceneNormalization, checkpoint dict)."""
    state = load_checkpoint(path)
    model = model_from_state(state, device).eval()
    return model, SceneNormalization.from_dict(state["normalization"]), state

"""Checks of a training config that catch bad values before any work starts (one line each, naming the flag).

:func:`check_config_files` runs before parsing (a config file must be readable UTF-8 text);
:func:`check_training_config` on the parsed values.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from core.errors import UserError

CONFIG_FLAGS = ("--config", "--base_config", "--depth_config")
POSITIVE_INTS = ("n_iters", "batch_size", "save_every", "progress_refresh_rate", "N_voxel_init", "N_voxel_final",
                 "nSamples")
NON_NEGATIVE = ("n_variation_iters", "n_test_images", "lr_init", "lr_basis", "lr_dynamic_init", "lr_dynamic_basis",
                "depth_lambda", "TV_weight_density", "TV_weight_app", "variation_weight", "step_ratio", "target_blur",
                "target_blur_until")


def _config_paths(argv: list[str]) -> list[str]:
    paths = []
    for i, arg in enumerate(argv):
        for flag in CONFIG_FLAGS:
            if arg == flag and i + 1 < len(argv):
                paths.append(argv[i + 1])
            elif arg.startswith(flag + "="):
                paths.append(arg.split("=", 1)[1])
    return [p for p in paths if p]


def check_config_files(argv: list[str]) -> None:
    """UserError naming a config file that is missing, unreadable or not UTF-8 text."""
    for path in map(Path, _config_paths(argv)):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UserError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{path}: not a text config file (not UTF-8)") from None
        if "\0" in text:
            raise UserError(f"{path}: not a text config file (binary content)")


def check_training_config(cfg: argparse.Namespace) -> None:
    """UserError naming the flag of the first value no training can run with."""
    for key, val in sorted(vars(cfg).items()):
        vals = val if isinstance(val, (list, tuple)) else [val]
        if any(isinstance(v, float) and not math.isfinite(v) for v in vals):
            raise UserError(f"--{key} {val}: must be a finite number")
    for key in POSITIVE_INTS:
        if getattr(cfg, key) <= 0:
            raise UserError(f"--{key} {getattr(cfg, key)}: must be positive")
    for key in NON_NEGATIVE:
        if getattr(cfg, key) < 0:
            raise UserError(f"--{key} {getattr(cfg, key)}: must not be negative")
    if not cfg.downsample_train > 0:
        raise UserError(f"--downsample_train {cfg.downsample_train}: must be > 0")
    if not 0 < cfg.depth_batch_fraction <= 1:
        raise UserError(f"--depth_batch_fraction {cfg.depth_batch_fraction}: must be in (0, 1]")

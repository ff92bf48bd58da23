"""Depth supervision sources for training (static-model depth maps, COLMAP keypoints)."""
from __future__ import annotations

import argparse

from dataLoader.errors import UserError


def build_depth_supervision(cfg: argparse.Namespace, data, device):
    """-> an object with ``loss_terms(model, batch, out, label, step) -> dict`` or None when off."""
    if not cfg.use_depth:
        return None
    raise UserError("config: use_depth 1 is not available in this version yet")

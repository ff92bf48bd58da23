"""Models: MixVoxels and its parts. ``MODELS`` maps names to classes."""
from __future__ import annotations

from models.mixvoxels import MixVoxels, ModelConfig

MODELS = {"mixvoxels": MixVoxels}


def build_model(name: str, cfg: ModelConfig | dict, aabb, resolution):
    if isinstance(cfg, dict):
        cfg = ModelConfig.from_dict(cfg)
    return MODELS[name](cfg, aabb, resolution)

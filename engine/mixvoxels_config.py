"""MixVoxels' own config files (``configs/schedule*/<scene>_<iters>.txt`` of the MixVoxels release),
translated into this toolkit's keys.

Keys with the same name and meaning pass through; a few are translated (``use_cosine_lr_scheduler``
-> ``lr_decay``; ``batch_size`` x ``batch_factor[0]`` -> ``batch_size``, the rays per iteration the
release trains with; ``n_train_frames`` must equal ``n_frames``: every iteration trains all frames here);
everything else has no effect here and is named in one warning line. ``train.py --config F`` accepts
such a file directly; ``tools/convert_mixvoxels_config.py F OUT`` writes the translation once.
"""
from __future__ import annotations

import contextlib
import logging
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError
from dataLoader.atomic_io import write_text

log = logging.getLogger(__name__)

# same name, same meaning
SAME = ("datadir", "basedir", "expname", "downsample_train", "ndc_ray", "scene_box", "n_iters", "n_frames",
        "N_voxel_init", "N_voxel_final", "upsamp_list", "update_AlphaMask_list", "n_lamb_sigma", "n_lamb_sh",
        "n_lamb_sigma_dynamic", "n_lamb_sh_dynamic", "data_dim_color", "data_dim_density", "featureC", "featureD",
        "static_featureC", "step_ratio", "fea2denseAct", "density_shift", "distance_scale", "nSamples",
        "alpha_mask_thre", "rm_weight_mask_thre", "temporal_variance_threshold", "dynamic_threshold",
        "dynamic_granularity", "point_wise_dynamic_threshold", "dynamic_pool_kernel_size", "lr_init", "lr_basis",
        "lr_dynamic_init", "lr_dynamic_basis", "lr_decay_target_ratio", "TV_weight_density", "TV_weight_app",
        "TV_dynamic_factor", "render_test", "vis_every", "frame_start", "seed", "depth_lambda", "use_depth",
        "use_colmap_depth", "depthmap_npy_path")
# keys of MixVoxels' files: a file holding one of them that this toolkit does not have is a MixVoxels config
MARKERS = ("dataset_name", "batch_factor", "use_cosine_lr_scheduler", "n_train_frames", "time_head", "render_path",
           "shadingMode", "N_vis")


@dataclass(frozen=True)
class Translation:
    values: dict[str, str]  # our key -> value text
    unused: tuple[str, ...]  # MixVoxels keys without an effect here


def read_key_values(path: Path) -> dict[str, str]:
    """``key = value`` lines (comments after ``#`` dropped, blank lines skipped), in file order."""
    out = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if "=" not in line:
            raise UserError(f"{path}:{n}: not a 'key = value' line: {line!r}")
        key, value = (s.strip() for s in line.split("=", 1))
        out[key] = value
    return out


def is_mixvoxels_config(path: str | Path, own_keys=frozenset()) -> bool:
    """True when ``path`` holds a MixVoxels-only key (one of MARKERS that is not in ``own_keys``)."""
    try:
        keys = read_key_values(Path(path))
    except (OSError, UserError):
        return False
    return any(k in keys and k not in own_keys for k in MARKERS)


def _list(value: str) -> list[str]:
    return [v for v in re.split(r"[\s,]+", value.strip("[] ")) if v]


def translate(raw: dict[str, str], source: str) -> Translation:
    """MixVoxels key/values -> ours (see the module docstring)."""
    values = {k: v for k, v in raw.items() if k in SAME}
    unused = [k for k in raw if k not in SAME]
    if "use_cosine_lr_scheduler" in raw:
        values["lr_decay"] = "cosine" if int(float(raw["use_cosine_lr_scheduler"])) else "exp"
        unused.remove("use_cosine_lr_scheduler")
    if "batch_size" in raw:
        factor = int(float(_list(raw["batch_factor"])[0])) if "batch_factor" in raw else 1
        values["batch_size"] = str(int(float(raw["batch_size"])) * factor)
        unused = [k for k in unused if k not in ("batch_size", "batch_factor")]
    if "n_train_frames" in raw:
        if raw["n_train_frames"] != raw.get("n_frames", raw["n_train_frames"]):
            raise UserError(f"{source}: n_train_frames {raw['n_train_frames']} differs from n_frames "
                            f"{raw['n_frames']}; this toolkit trains all frames every iteration")
        unused.remove("n_train_frames")
    return Translation(values, tuple(unused))


def warn_unused(tr: Translation, source: str) -> None:
    if tr.unused:
        log.warning("%s: MixVoxels keys without an effect here (ignored): %s", source, ", ".join(tr.unused))


def to_text(tr: Translation, source: str) -> str:
    lines = [f"# translated from the MixVoxels config {source}"]
    if tr.unused:
        lines.append(f"# ignored (no effect here): {', '.join(tr.unused)}")
    lines += [f"{k} = {v}" for k, v in tr.values.items()]
    return "\n".join(lines) + "\n"


def write_translation(src: str | Path, dst: str | Path) -> Translation:
    """Translate the MixVoxels config ``src`` into a config file ``dst`` of this toolkit."""
    tr = translate(read_key_values(Path(src)), str(src))
    write_text(dst, to_text(tr, str(src)))
    return tr


CONFIG_FLAGS = ("--config", "--base_config", "--depth_config")


@contextlib.contextmanager
def translated_argv(argv: list[str], own_keys=frozenset()) -> Iterator[tuple[list[str], dict[str, str]]]:
    """argv with every config file that is a MixVoxels config replaced by its translation (a temp file with
    the same stem, so default run names stay); yields (argv, {dest: original path}) and removes the temps."""
    out, originals = list(argv), {}
    with tempfile.TemporaryDirectory(prefix="mixvoxels_cfg_") as tmp:
        for i, arg in enumerate(argv):
            flag, _, inline = arg.partition("=")
            if flag not in CONFIG_FLAGS:
                continue
            path = inline or (argv[i + 1] if i + 1 < len(argv) else "")
            if not path or not is_mixvoxels_config(path, own_keys):
                continue
            dst = Path(tmp) / flag.lstrip("-") / Path(path).name
            dst.parent.mkdir()
            tr = write_translation(path, dst)
            warn_unused(tr, path)
            if inline:
                out[i] = f"{flag}={dst}"
            else:
                out[i + 1] = str(dst)
            originals[flag.lstrip("-")] = path
        yield out, originals

"""Every config key, grouped and documented, with its default.

Config files are ``key = value`` text; lists are ``[a, b, c]``. Precedence:
``--base_config`` < ``--config`` < command line. Unknown keys are errors.
Derived values are computed by :func:`resolve`, never by assigning to the parsed namespace.
:func:`engine.option_groups.groups` turns a resolved config into the typed groups the library reads
(run, data with the depth targets, model, objective weights, the training schedule).

Defaults live once: here, except the model keys, whose defaults are :class:`ModelConfig`'s.
The seed workflow's ``use_depth`` / ``use_colmap_depth`` pair is still read (with a warning) and
becomes ``depth_source``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import configargparse

from core.errors import UserError
from dataLoader.atomic_io import write_text
from dataLoader.depth_targets import DEPTH_SOURCES
from dataLoader.scene_layout import DENSE_DEPTH, SPARSE_DEPTH, SceneDir
from engine.config_checks import check_config_files, check_training_config
from models.mixvoxels import ModelConfig
from models.objective import AUTO_OPACITY, DEPTH_LOSSES

log = logging.getLogger(__name__)
LEGACY_DEPTH_KEYS = ("use_depth", "use_colmap_depth")


class _Parser(configargparse.ArgumentParser):
    def error(self, message):  # one clear line, no usage dump
        raise UserError(f"config: {message}")


def _data(p):
    g = p.add_argument_group("data")
    g.add_argument("--datadir", type=str, default="", help="scene directory (relative to data_root unless absolute)")
    g.add_argument("--data_root", type=str, default=".", help="root for relative datadir paths")
    g.add_argument("--downsample", "--downsample_train", dest="downsample_train", type=float, default=1.0,
                   help="train at the capture size (H, W in poses_bounds.npy) divided by this; frames already "
                        "reduced by prepare_video.py are resized only by what remains")
    g.add_argument("--exclude_cams", type=str, nargs="*", default=[],
                   help="camera names (e.g. cam13) whose frames and pose rows are dropped")
    g.add_argument("--frame_start", type=int, default=0, help="first frame used")
    g.add_argument("--n_frames", type=int, default=-1, help="number of frames T (-1: all)")
    g.add_argument("--test_cams", type=int, nargs="*", default=[0], help="held-out camera indices")
    g.add_argument("--ndc_ray", type=int, default=-1,
                   help="1: forward-facing NDC rays; 0: bounded metric rays; -1: choose from the rig")
    g.add_argument("--scene_box", type=float, nargs="*", default=[],
                   help="ray-space aabb: lower corner (upper = -lower) or 6 numbers; empty: automatic. NDC rays "
                        "are sampled over its z range only")
    g.add_argument("--std_blur_kernel", type=int, default=0,
                   help="Gaussian blur of temporal std maps, odd pixels (0: auto ~ width/45)")


def _run(p):
    g = p.add_argument_group("run")
    g.add_argument("--basedir", type=str, default="log", help="runs are written to basedir/expname")
    g.add_argument("--expname", type=str, default="",
                   help="run name (default: the config file's stem, then _<schedule> when a schedule is named)")
    g.add_argument("--schedule", type=str, default="",
                   help="schedule name (T, S, M, L; set by configs/base/*.txt), appended to the default run name")
    g.add_argument("--overwrite", type=int, default=0, help="1: allow reusing an existing run dir")
    g.add_argument("--seed", type=int, default=0, help="seed for every RNG")
    g.add_argument("--device", type=str, default="auto", help="auto, cpu, cuda, cuda:1 ...")
    g.add_argument("--ckpt", type=str, default="", help="checkpoint to resume from (with --resume 1)")
    g.add_argument("--resume", type=int, default=0, help="1: continue training from --ckpt")
    g.add_argument("--save_every", type=int, default=1000, help="checkpoint interval (iterations)")
    g.add_argument("--progress_refresh_rate", type=int, default=10, help="progress-bar update interval")
    g.add_argument("--render_test", type=int, default=1, help="evaluate and render test cameras at the end")
    g.add_argument("--n_test_images", type=int, default=3, help="test frames saved as PNG")
    g.add_argument("--render_budget_mb", type=float, default=-1,
                   help="test rendering: memory for one ray chunk (-1: 6144 on CUDA, at most half the free memory; "
                        "192 on CPU)")
    g.add_argument("--tensorboard", type=int, default=1,
                   help="1: TensorBoard event files in RUN/tensorboard (tensorboard --logdir log)")
    g.add_argument("--vis_every", type=int, default=1000,
                   help="render n_vis test frames and log their PSNR every this many iterations (0: never)")
    g.add_argument("--n_vis", type=int, default=3, help="test frames per test camera of a periodic test")


def _model(p):
    g = p.add_argument_group("model")
    m = ModelConfig()  # the defaults of the model keys
    g.add_argument("--static_only", type=int, default=0, help="1: static branch only (T = 1 static model)")
    g.add_argument("--N_voxel_init", type=int, default=128 ** 3, help="initial voxel count")
    g.add_argument("--N_voxel_final", type=int, default=256 ** 3, help="final voxel count")
    g.add_argument("--upsamp_list", type=int, nargs="*", default=[1000, 1500, 2000, 2750],
                   help="iterations at which the grid grows (log schedule)")
    g.add_argument("--update_AlphaMask_list", type=int, nargs="*", default=[1250],
                   help="iterations at which the alpha mask is rebuilt (first one shrinks the aabb)")
    g.add_argument("--n_lamb_sigma", type=int, nargs=3, default=list(m.n_lamb_sigma), help="static density components")
    g.add_argument("--n_lamb_sh", type=int, nargs=3, default=list(m.n_lamb_sh), help="static appearance components")
    g.add_argument("--n_lamb_sigma_dynamic", type=int, nargs=3, default=list(m.n_lamb_sigma_dynamic),
                   help="dynamic density components")
    g.add_argument("--n_lamb_sh_dynamic", type=int, nargs=3, default=list(m.n_lamb_sh_dynamic),
                   help="dynamic appearance components")
    g.add_argument("--app_dim", type=int, default=m.app_dim, help="static appearance feature width")
    g.add_argument("--data_dim_density", type=int, default=m.data_dim_density, help="dynamic density feature width")
    g.add_argument("--data_dim_color", type=int, default=m.data_dim_color, help="dynamic colour feature width")
    g.add_argument("--static_featureC", type=int, default=m.static_featureC, help="static colour MLP width")
    g.add_argument("--featureC", type=int, default=m.featureC, help="dynamic colour time-head width")
    g.add_argument("--featureD", type=int, default=m.featureD, help="dynamic density time-head width")
    g.add_argument("--fea2denseAct", type=str, default=m.fea2denseAct, choices=["relu", "softplus"])
    g.add_argument("--density_shift", type=float, default=m.density_shift, help="softplus shift")
    g.add_argument("--distance_scale", type=float, default=m.distance_scale, help="alpha = 1 - exp(-sigma dt scale)")
    g.add_argument("--step_ratio", type=float, default=m.step_ratio, help="samples per ray = |resolution| / step_ratio")
    g.add_argument("--nSamples", type=int, default=m.n_samples_max, help="cap on samples per ray")
    g.add_argument("--alpha_mask_thre", type=float, default=m.alpha_mask_thre, help="occupancy threshold")
    g.add_argument("--rm_weight_mask_thre", type=float, default=m.rm_weight_mask_thre,
                   help="skip colour where the weight is below this")
    g.add_argument("--view_dependent", type=int, default=int(m.view_dependent),
                   help="1: the colour heads see the view direction; 0: colour depends on position (and frame) only")


def _dynamic(p):
    g = p.add_argument_group("dynamic")
    m = ModelConfig()
    g.add_argument("--temporal_variance_threshold", type=float, default=0.02,
                   help="a ray is dynamic when its blurred temporal std exceeds this")
    g.add_argument("--dynamic_threshold", type=float, default=m.dynamic_threshold,
                   help="test time: ray dynamic when sigmoid(max variation logit) > this")
    g.add_argument("--dynamic_granularity", type=str, default=m.dynamic_granularity, choices=["point_wise", "ray_wise"])
    g.add_argument("--point_wise_dynamic_threshold", type=float, default=m.point_wise_dynamic_threshold,
                   help="point dynamic when sigmoid(pooled logit) > this")
    g.add_argument("--dynamic_pool_kernel_size", type=int, default=m.dynamic_pool_kernel_size,
                   help="along-ray max-pool (odd)")
    g.add_argument("--train_dynamic_rays", type=str, default="label", choices=["label", "field", "union"],
                   help="rays the dynamic branch renders in training: the std label, the variation field's "
                        "prediction (as at test time; MixVoxels' point_wise), or either")
    g.add_argument("--zero_dynamic_sigma", type=int, default=int(m.zero_dynamic_sigma),
                   help="1: zero dynamic density where the static one is ~0 and alpha barely changes over time")
    g.add_argument("--zero_dynamic_sigma_thresh", type=float, default=m.zero_dynamic_sigma_thresh,
                   help="zero_dynamic_sigma: static density below which a point counts as empty")
    g.add_argument("--sigma_static_thresh", type=float, default=m.sigma_static_thresh,
                   help="zero_dynamic_sigma: max - min alpha over frames below which a point counts as still")
    g.add_argument("--dynamic_compose", type=str, default=m.dynamic_compose, choices=["replace", "gate"],
                   help="density at dynamic points: the dynamic one alone (replace, MixVoxels) or plus a learned "
                        "per-frame share of the static one (gate)")
    g.add_argument("--n_variation_iters", type=int, default=300,
                   help="variation-field warm-up iterations before the main loop")
    g.add_argument("--variation_weight", type=float, default=0.05, help="weight of the variation-field BCE")


def _optim(p):
    g = p.add_argument_group("optimisation")
    g.add_argument("--n_iters", type=int, default=5000, help="training iterations")
    g.add_argument("--batch_size", type=int, default=4096, help="rays per iteration")
    g.add_argument("--lr_init", type=float, default=0.02, help="static (and variation) grid learning rate")
    g.add_argument("--lr_basis", type=float, default=1e-3, help="static basis/MLP learning rate")
    g.add_argument("--lr_dynamic_init", type=float, default=0.02, help="dynamic grid learning rate")
    g.add_argument("--lr_dynamic_basis", type=float, default=1e-3, help="dynamic basis/MLP learning rate")
    g.add_argument("--lr_decay", type=str, default="cosine", choices=["cosine", "exp"])
    g.add_argument("--lr_decay_target_ratio", type=float, default=0.1, help="final lr factor of exp decay")
    g.add_argument("--TV_weight_density", type=float, default=1.0, help="TV on density planes")
    g.add_argument("--TV_weight_app", type=float, default=1.0, help="TV on appearance planes")
    g.add_argument("--TV_dynamic_factor", type=float, default=3.0, help="TV multiplier for dynamic planes")
    g.add_argument("--distortion_weight", type=float, default=0.0,
                   help="Mip-NeRF 360 distortion loss on the static weights (follows the lr decay)")
    g.add_argument("--near_weight", type=float, default=2.0,
                   help="penalty on static weight nearer than the near bound (space where nothing is); "
                        "0 = off. Removes near-camera haze (BENCHMARKS.md, quality on unseen scenes)")
    g.add_argument("--near_t", type=float, default=-1.0,
                   help="near_weight's bound: -1 = each ray's camera near bound (poses_bounds.npy); "
                        ">= 0 = this ray parameter (NDC t) for every ray")
    g.add_argument("--opacity_entropy_weight", type=float, default=0.0, help="binary entropy of ray opacity")
    g.add_argument("--opacity_weight", type=float, default=-1.0,
                   help="(1 - static ray opacity)^2 penalty: every ray ends on a surface; -1 = auto: "
                        f"{AUTO_OPACITY} for forward-facing (NDC) scenes, 0 for bounded ones (BENCHMARKS.md)")
    g.add_argument("--opacity_start", type=float, default=0.0,
                   help="fraction of n_iters after which the opacity prior applies (0 = from the start)")
    g.add_argument("--pixel_jitter", type=int, default=0,
                   help="1: each training ray passes through a random point of its pixel (anti-aliasing: the "
                        "colour is the pixel's average); 0: through its centre")
    g.add_argument("--target_blur", type=float, default=3.0,
                   help="coarse-to-fine static targets: the static branch's colour comes from a neighbour "
                        "drawn from a Gaussian of this many pixels, narrowing linearly to 0 at "
                        "target_blur_until * n_iters; 0 = off (BENCHMARKS.md, coarse-to-fine targets)")
    g.add_argument("--target_blur_until", type=float, default=0.5,
                   help="fraction of n_iters at which the target blur reaches 0")
    g.add_argument("--static_target", default="mode", choices=["mean", "median", "mode"],
                   help="the static branch's colour target of a ray: its frames' mean, median (MixVoxels' "
                        "static_type; the background wherever movers cover a pixel in fewer than half the frames) "
                        "or mode (the mean of the largest set of frames that agree within 8/255: the background "
                        "wherever it is the colour seen longest). BENCHMARKS.md, median and mode static targets")
    g.add_argument("--dead_frame_check", type=int, default=100,
                   help="every N iterations, a frame whose dynamic density went <= 0 everywhere (relu: it gets "
                        "no gradient again, its movers vanish) restarts from its nearest live frame; 0 = never")
    g.add_argument("--white_bg_fraction", type=float, default=0.0,
                   help="fraction of steps whose static colour loss composites on white (MixVoxels: 0.5)")
    g.add_argument("--tv_scale", type=float, default=1e-2,
                   help="TV multiplier (MixVoxels/TensoRF: 2e-2 for the same TV weights; ours was 1e-2)")
    g.add_argument("--lr_upsample_reset", type=int, default=0,
                   help="1: restart the lr schedule at each upsample (MixVoxels: lr0 * cos(t)/cos(u))")
    g.add_argument("--variation_refit_iters", type=int, default=0,
                   help="variation-field refit iterations after each upsample (MixVoxels retrains it)")
    g.add_argument("--alpha_mask_distance_scale", type=int, default=int(ModelConfig().alpha_mask_distance_scale),
                   help="1: alpha-mask test uses step * distance_scale; 0: the step only (MixVoxels)")
    g.add_argument("--amp", type=int, default=-1, choices=(-1, 0, 1),
                   help="mixed precision: -1 auto (on for CUDA, off for CPU), 0 float32, 1 autocast "
                        "(CUDA: bfloat16, float16 + GradScaler before Ampere; CPU: bfloat16)")


def _depth(p):
    g = p.add_argument_group("depth supervision")
    g.add_argument("--depth_source", type=str, default="none", choices=DEPTH_SOURCES,
                   help="depth loss on the static branch: none, static_model or video_mvs (dense maps from "
                        "static_model2depth.py or video2depth.py, depthmap_npy_path) or colmap (sparse keypoints, "
                        "colmap_depth_path)")
    g.add_argument("--use_depth", type=int, default=None, help="seed workflow: 1 = a depth loss (use depth_source)")
    g.add_argument("--use_colmap_depth", type=int, default=None,
                   help="seed workflow: with use_depth 1, 1 = colmap, 0 = static_model (use depth_source)")
    g.add_argument("--depthmap_npy_path", type=str, default=DENSE_DEPTH,
                   help="dense depth file (relative to datadir unless absolute)")
    g.add_argument("--colmap_depth_path", type=str, default=SPARSE_DEPTH,
                   help="sparse depth file (relative to datadir unless absolute)")
    g.add_argument("--depth_loss", type=str, default="mse", choices=DEPTH_LOSSES)
    g.add_argument("--depth_lambda", type=float, default=0.1, help="depth loss weight")
    g.add_argument("--depth_lambda_decay", type=float, default=1.0,
                   help="factor the weight reaches at the last iteration (exponential)")
    g.add_argument("--depth_batch_fraction", type=float, default=0.25,
                   help="COLMAP: keypoint rays per iteration as a fraction of batch_size")
    g.add_argument("--depth_sigma", type=float, default=0.02,
                   help="ds_kl: target std-dev as a fraction of depth (scaled by reprojection error)")


def build_parser() -> configargparse.ArgumentParser:
    p = _Parser(description="MixVoxels with depth supervision", allow_abbrev=False,
                config_file_parser_class=configargparse.DefaultConfigFileParser)
    p.add_argument("--base_config", is_config_file=True, help="schedule file (overridden by --config)")
    p.add_argument("--depth_config", is_config_file=True, default="",
                   help="depth-supervision overlay, e.g. configs/depth/static_model.txt (overridden by --config)")
    p.add_argument("--config", is_config_file=True, help="scene config file")
    for group in (_data, _run, _model, _dynamic, _optim, _depth):
        group(p)
    return p


def parse(argv=None) -> argparse.Namespace:
    """Parse the command line; MixVoxels' own config files are translated on the way
    (:mod:`engine.mixvoxels_config`: known keys mapped, the others named in one warning);
    ``--resume 1 --ckpt X`` without ``--config`` uses X's stored config as defaults."""
    from engine.mixvoxels_config import translated_argv

    argv = list(sys.argv[1:] if argv is None else argv)
    check_config_files(argv)
    parser = build_parser()
    with translated_argv(argv, frozenset(a.dest for a in parser._actions)) as (args, originals):
        known, _ = parser.parse_known_args(args)
        if known.resume and known.ckpt and not (known.config or known.base_config):
            from engine.run_dir import checkpoint_defaults  # nothing to load unless resuming

            parser.set_defaults(**checkpoint_defaults(known.ckpt))
        cfg = parser.parse_args(args)
    for key, path in originals.items():
        setattr(cfg, key, path)
    return cfg


def resolve(cfg: argparse.Namespace) -> argparse.Namespace:
    """Derived values as a new namespace: expname, absolute datadir, blur kernel."""
    check_training_config(cfg)
    out = argparse.Namespace(**vars(cfg))
    if not out.expname:
        out.expname = Path(cfg.config).stem if cfg.config else Path(cfg.datadir.rstrip("/")).name or "run"
        if getattr(cfg, "schedule", ""):
            out.expname += f"_{cfg.schedule}"
    if not cfg.datadir:
        raise UserError("config: datadir is not set")
    out.datadir = str(SceneDir(cfg.data_root).resolve(cfg.datadir))
    if out.std_blur_kernel < 0 or (out.std_blur_kernel and out.std_blur_kernel % 2 == 0):
        raise UserError(f"config: std_blur_kernel must be 0 (auto) or an odd number, got {cfg.std_blur_kernel}")
    if out.dynamic_pool_kernel_size % 2 == 0:
        raise UserError("config: dynamic_pool_kernel_size must be odd")
    legacy = {k: getattr(out, k) for k in LEGACY_DEPTH_KEYS if getattr(out, k, None) is not None}
    if legacy:
        source = legacy_depth_source(legacy)
        if out.depth_source not in ("none", source):
            raise UserError(f"config: depth_source {out.depth_source} contradicts "
                            f"{', '.join(f'{k} = {v}' for k, v in legacy.items())}")
        log.warning("config: %s are the seed workflow's keys; use depth_source = %s",
                    " and ".join(legacy), source)
        out.depth_source = source
    for key in LEGACY_DEPTH_KEYS:
        vars(out).pop(key, None)
    return out


def legacy_depth_source(keys: dict) -> str:
    """depth_source of the seed workflow's ``use_depth`` / ``use_colmap_depth`` values."""
    if not int(keys.get("use_depth") or 0):
        return "none"
    return "colmap" if int(keys.get("use_colmap_depth") or 0) else "static_model"


def upgrade_config(saved: dict) -> dict:
    """A stored config (checkpoint, config.txt) with the seed workflow's depth keys as ``depth_source``."""
    out = {k: v for k, v in saved.items() if k not in LEGACY_DEPTH_KEYS}
    if "depth_source" not in out and any(k in saved for k in LEGACY_DEPTH_KEYS):
        out["depth_source"] = legacy_depth_source(saved)
    return out


def save_config(cfg: argparse.Namespace, path: Path) -> None:
    """Write the fully resolved config as ``key = value`` lines that :func:`parse` reads back."""
    lines = []
    skip = {"config", "base_config"}
    for key, val in sorted(vars(cfg).items()):
        if key in skip:
            continue
        if isinstance(val, (list, tuple)):
            val = "[" + ", ".join(str(v) for v in val) + "]"
        lines.append(f"{key} = {val}")
    write_text(path, "\n".join(lines) + "\n")

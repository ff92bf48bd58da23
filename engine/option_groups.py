"""The typed option groups of a training run, built once from a resolved config (:mod:`engine.options`).

:class:`Options` holds run, data (with the depth targets), model, objective weights and the training
schedule; the library reads these, not the flat config.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from dataLoader.dataset import DataOptions
from dataLoader.depth_targets import DepthTargetOptions
from dataLoader.scene_layout import SceneDir
from engine.train.schedule import GridSchedule
from models.mixvoxels import ModelConfig
from models.objective import ObjectiveWeights


@dataclass(frozen=True)
class RunOptions:
    """Where a run is written, how it starts (fresh or resumed) and what it reports."""

    basedir: Path
    expname: str
    overwrite: bool
    seed: int
    device: str
    ckpt: str
    resume: bool
    save_every: int
    progress_refresh_rate: int
    render_test: bool
    n_test_images: int


@dataclass(frozen=True)
class TrainOptions:
    """The optimisation: iterations, batch, learning rates, the grid and depth schedules, AMP."""

    n_iters: int
    batch_size: int
    lr_init: float
    lr_basis: float
    lr_dynamic_init: float
    lr_dynamic_basis: float
    lr_decay: str
    lr_decay_target_ratio: float
    amp: int  # -1 auto, 0 float32, 1 autocast (engine.precision)
    grid: GridSchedule
    temporal_variance_threshold: float  # a ray is dynamic when its blurred temporal std exceeds this
    n_variation_iters: int
    depth_lambda: float
    depth_lambda_decay: float
    depth_batch_fraction: float
    train_dynamic_rays: str  # label | field | union: which rays the dynamic branch renders in training
    tv_scale: float
    lr_upsample_reset: bool
    variation_refit_iters: int
    target_blur: float = 3.0  # coarse-to-fine static targets: initial Gaussian tap width in pixels (0 = off)
    target_blur_until: float = 0.5  # fraction of n_iters at which the blur reaches 0
    pixel_jitter: bool = False  # training rays through random points of their pixels
    static_target: str = "mode"  # the static branch's colour target: mean, median or mode of the ray's frames
    dead_frame_check: int = 100  # every this many iterations restart dead dynamic frames (models.dead_frames)

    @property
    def keypoint_batch(self) -> int:
        """Keypoint rays rendered per iteration (sparse depth)."""
        return max(1, int(self.batch_size * self.depth_batch_fraction))


@dataclass(frozen=True)
class Options:
    """Every option group of a training run, built once from the resolved config by :func:`groups`.

    ``config`` keeps the flat resolved config: it is what ``config.txt`` and checkpoints store.
    ``model`` holds the config's model keys; the scene's frame count, ray space and near/far are
    filled in when the model is built (:func:`engine.train.setup.new_model`).
    """

    run: RunOptions
    data: DataOptions
    model: ModelConfig
    objective: ObjectiveWeights
    train: TrainOptions
    config: argparse.Namespace


def depth_target_options(cfg: argparse.Namespace) -> DepthTargetOptions:
    """The depth file of ``depth_source`` (resolved against datadir) and how its targets are built."""
    if cfg.depth_source == "none":
        return DepthTargetOptions()
    path = cfg.colmap_depth_path if cfg.depth_source == "colmap" else cfg.depthmap_npy_path
    return DepthTargetOptions(cfg.depth_source, SceneDir(cfg.datadir).resolve(path), cfg.depth_sigma,
                              cfg.temporal_variance_threshold)


def data_options(cfg: argparse.Namespace, with_depth: bool = False) -> DataOptions:
    """The dataset's options; ``with_depth``: also the depth targets the config asks for (training)."""
    return DataOptions(
        datadir=Path(cfg.datadir), downsample=cfg.downsample_train, frame_start=cfg.frame_start,
        n_frames=cfg.n_frames, test_cams=tuple(cfg.test_cams), scene_box=tuple(cfg.scene_box),
        ndc=None if cfg.ndc_ray < 0 else bool(cfg.ndc_ray), std_blur_kernel=cfg.std_blur_kernel,
        exclude_cams=tuple(getattr(cfg, "exclude_cams", ())),
        depth=depth_target_options(cfg) if with_depth else DepthTargetOptions())


def model_config(cfg: argparse.Namespace) -> ModelConfig:
    """The config's model keys (n_frames, ndc and near_far keep their defaults: they come from the scene)."""
    return ModelConfig(
        static_only=bool(cfg.static_only),
        n_lamb_sigma=tuple(cfg.n_lamb_sigma), n_lamb_sh=tuple(cfg.n_lamb_sh),
        n_lamb_sigma_dynamic=tuple(cfg.n_lamb_sigma_dynamic), n_lamb_sh_dynamic=tuple(cfg.n_lamb_sh_dynamic),
        app_dim=cfg.app_dim, data_dim_density=cfg.data_dim_density, data_dim_color=cfg.data_dim_color,
        static_featureC=cfg.static_featureC, featureC=cfg.featureC, featureD=cfg.featureD,
        fea2denseAct=cfg.fea2denseAct, density_shift=cfg.density_shift, distance_scale=cfg.distance_scale,
        step_ratio=cfg.step_ratio, n_samples_max=cfg.nSamples, alpha_mask_thre=cfg.alpha_mask_thre,
        rm_weight_mask_thre=cfg.rm_weight_mask_thre, dynamic_threshold=cfg.dynamic_threshold,
        dynamic_granularity=cfg.dynamic_granularity,
        point_wise_dynamic_threshold=cfg.point_wise_dynamic_threshold,
        dynamic_pool_kernel_size=cfg.dynamic_pool_kernel_size, zero_dynamic_sigma=bool(cfg.zero_dynamic_sigma),
        zero_dynamic_sigma_thresh=cfg.zero_dynamic_sigma_thresh, sigma_static_thresh=cfg.sigma_static_thresh,
        alpha_mask_distance_scale=bool(cfg.alpha_mask_distance_scale), view_dependent=bool(cfg.view_dependent),
        dynamic_compose=cfg.dynamic_compose)


def groups(cfg: argparse.Namespace) -> Options:
    """The typed option groups of a resolved config (see :func:`resolve`)."""
    run = RunOptions(Path(cfg.basedir), cfg.expname, bool(cfg.overwrite), cfg.seed, cfg.device, cfg.ckpt,
                     bool(cfg.resume), cfg.save_every, cfg.progress_refresh_rate, bool(cfg.render_test),
                     cfg.n_test_images)
    grid = GridSchedule(cfg.N_voxel_init, cfg.N_voxel_final, tuple(cfg.upsamp_list), tuple(cfg.update_AlphaMask_list))
    train = TrainOptions(cfg.n_iters, cfg.batch_size, cfg.lr_init, cfg.lr_basis, cfg.lr_dynamic_init,
                         cfg.lr_dynamic_basis, cfg.lr_decay, cfg.lr_decay_target_ratio, cfg.amp, grid,
                         cfg.temporal_variance_threshold, cfg.n_variation_iters, cfg.depth_lambda,
                         cfg.depth_lambda_decay, cfg.depth_batch_fraction, cfg.train_dynamic_rays, cfg.tv_scale,
                         bool(cfg.lr_upsample_reset), cfg.variation_refit_iters, cfg.target_blur,
                         cfg.target_blur_until, bool(cfg.pixel_jitter), cfg.static_target,
                         cfg.dead_frame_check)
    objective = ObjectiveWeights(cfg.TV_weight_density, cfg.TV_weight_app, cfg.TV_dynamic_factor,
                                 cfg.variation_weight, cfg.depth_loss, cfg.distortion_weight, cfg.near_weight,
                                 cfg.near_t, cfg.opacity_entropy_weight, cfg.opacity_weight, cfg.white_bg_fraction,
                                 cfg.opacity_start)
    return Options(run, data_options(cfg, with_depth=True), model_config(cfg), objective, train, cfg)

"""Multi-camera video dataset in the N3DV layout (SPEC §3): read-only over the frame cache.

Rows of ``poses_bounds.npy`` correspond to the sorted camera folders ``frames/camXX``. Rays
live in the model's ray space: NDC for forward-facing scenes, normalized world otherwise.
Training colours stay uint8 (memory-mapped for large scenes); batches are gathered per step.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.errors import UserError
from dataLoader.depth_space import camera_z_to_ray_param
from dataLoader.depth_targets import DENSE_SOURCES, DenseDepthTargets, DepthTargetOptions, KeypointTargets
from dataLoader.frame_cache import COLOUR_MAPS, FrameCache, auto_blur_kernel, build_cache, target_size
from dataLoader.poses import CameraRig, SceneNormalization
from dataLoader.rays import pose_rays
from dataLoader.rig_geometry import (
    NDC_BOX,
    bounded_scene_box,
    box_coverage,
    is_forward_facing,
    min_near,
    view_spread_deg,
)
from dataLoader.scene_files import frames_factor, load_scene_files
from dataLoader.scene_layout import SceneDir, check_aspect
from dataLoader.target_blur import blurred_pixels
from models.types import RayBatch

log = logging.getLogger(__name__)
MIN_BOX_COVERAGE = 0.1  # a configured bounded box holding less of the rays' segments is refused
WARN_BOX_COVERAGE = 0.5  # ... and one holding less than this is warned about
MIN_SIDE = 4  # smallest image side (pixels) left after --downsample_train


@dataclass(frozen=True)
class DataOptions:
    """What shapes the dataset (a subset of the config)."""

    datadir: Path
    downsample: float = 1.0
    frame_start: int = 0
    n_frames: int = -1
    test_cams: tuple[int, ...] = (0,)
    scene_box: tuple[float, ...] = ()  # empty: NDC_BOX for NDC rays, the cameras' frusta when bounded
    ndc: bool | None = None  # None: forward-facing rigs get NDC rays, others bounded metric rays
    std_blur_kernel: int = 0  # 0: auto
    exclude_cams: tuple[str, ...] = ()  # camera names whose frames and pose rows are dropped
    depth: DepthTargetOptions = DepthTargetOptions()  # depth targets gathered with the colours


def scene_aabb(scene_box) -> np.ndarray:
    """scene_box (3 numbers: lower corner, upper = -lower; or 6 numbers: lower then upper) -> [2, 3]."""
    box = np.asarray(scene_box, dtype=np.float64)
    if box.size == 3:
        box = np.stack([box, -box])
    elif box.size == 6:
        box = box.reshape(2, 3)
    else:
        raise UserError(f"--scene_box {box.tolist()}: must have 3 or 6 numbers")
    if not np.all(np.isfinite(box)) or np.any(box[0] >= box[1]):
        raise UserError(f"--scene_box {np.asarray(scene_box).tolist()}: the lower corner {box[0].tolist()} must be "
                        f"below the upper corner {box[1].tolist()} on every axis (3 numbers give the lower corner)")
    return box


def check_box_coverage(rig: CameraRig, norm: SceneNormalization, box: np.ndarray, scene_box) -> None:
    """A configured bounded box must hold the space the cameras observe: refuse one that holds almost none of
    the training rays' [near, far] segments, warn loudly about one that misses most of them."""
    cover = box_coverage(rig, norm, box)
    what = (f"--scene_box {list(scene_box)} holds {100 * cover:.0f}% of the training rays' [near, far] segments "
            f"(bounded rays; a box written for NDC rays does not fit them)")
    if cover < MIN_BOX_COVERAGE:
        raise UserError(f"{what}; remove scene_box to use the automatic box, or give one around the scene")
    if cover < WARN_BOX_COVERAGE:
        log.warning("%s: most of the observed space is outside the model; remove scene_box to use the "
                    "automatic box", what)


class VideoDataset:
    """All cameras of a scene. Train rays: [Nr, 3] origins/directions, Nr = K_train * H * W."""

    def __init__(self, opts: DataOptions, normalization: SceneNormalization | None = None):
        datadir = Path(opts.datadir)
        if not datadir.is_dir():
            raise UserError(f"{datadir}: data directory not found")
        self.opts = opts
        scene = load_scene_files(datadir, opts.frame_start, opts.n_frames, opts.exclude_cams)
        poses_path, self.rig, src = scene.poses_path, scene.rig, scene.src
        self.excluded = scene.excluded
        check_aspect(self.rig, src.hw, poses_path)
        self.cam_names = src.cam_names
        factor = frames_factor(self.rig, src.hw, opts.downsample, SceneDir(datadir).frames)
        small = target_size(src.hw, factor)
        if min(small) < MIN_SIDE:
            raise UserError(f"--downsample_train {opts.downsample:g}: the {src.hw[1]}x{src.hw[0]} frames would be "
                            f"{small[1]}x{small[0]} pixels (at least {MIN_SIDE} per side needed)")
        blur = opts.std_blur_kernel or auto_blur_kernel(small[1])
        self.cache = FrameCache.open(build_cache(datadir, src, factor, blur))
        self.h, self.w = self.cache.meta["hw"]
        self.n_frames = self.cache.meta["n_frames"]
        own = self._normalization(opts, find_box=normalization is None)  # a given one brings its own box
        if normalization is not None:
            normalization.require_same_world(own, str(poses_path))
        self.normalization = normalization or own
        self.c2w = self.normalization.apply(self.rig.c2w)
        self.test_idx = self._check_test_cams(opts.test_cams)
        self.train_idx = [k for k in range(len(self.cam_names)) if k not in self.test_idx]
        if not self.train_idx:
            raise UserError(f"{datadir}: no training cameras left after holding out {list(opts.test_cams)}")
        origins, dirs, near = zip(*(self._train_rays(k) for k in self.train_idx))
        self.train_origins = torch.cat(origins)
        self.train_dirs = torch.cat(dirs)
        self.train_near = torch.cat(near)
        source = opts.depth.source
        self.dense_depth = DenseDepthTargets(opts.depth, self) if source in DENSE_SOURCES else None
        self.keypoints = KeypointTargets(opts.depth, self, self.cache.std) if source == "colmap" else None

    def _normalization(self, opts: DataOptions, find_box: bool = True) -> SceneNormalization:
        """The scene's own normalization; without ``find_box`` its aabb is left empty (world checks ignore it)."""
        ndc = opts.ndc
        if ndc is None:
            ndc = is_forward_facing(self.rig)
            log.info("rig views spread over %.0f deg: %s rays", view_spread_deg(self.rig.c2w),
                     "forward-facing NDC" if ndc else "bounded metric")
        if not find_box:
            return SceneNormalization.from_rig(self.rig, np.zeros((2, 3)), ndc)
        if opts.scene_box:
            box, source = scene_aabb(opts.scene_box), "the config's scene_box"
        elif ndc:
            box, source = scene_aabb(NDC_BOX), "the NDC default"
        else:
            unit = SceneNormalization.from_rig(self.rig, np.zeros((2, 3)), ndc=False)
            box, source = bounded_scene_box(self.rig, unit, opts.datadir, self.cam_names)
        log.info("%s scene box %s .. %s from %s", "NDC" if ndc else "bounded", np.round(box[0], 3).tolist(),
                 np.round(box[1], 3).tolist(), source)
        norm = SceneNormalization.from_rig(self.rig, box, ndc)
        if opts.scene_box and not ndc:
            check_box_coverage(self.rig, norm, box, opts.scene_box)
        return norm

    @property
    def near_far(self) -> tuple[float, float]:
        """Ray-parameter range the model samples: NDC the box's z range (NDC rays run z = -1 + 2 t, so the
        default box gives [0, 1]); bounded: (min near, inf) clipped by the aabb."""
        if self.normalization.ndc:
            z_lo, z_hi = self.normalization.aabb[0][2], self.normalization.aabb[1][2]
            return (max(z_lo, -1.0) + 1) / 2, (min(z_hi, 1.0) + 1) / 2
        return min_near(self.rig, self.normalization), float("inf")

    def _check_test_cams(self, test_cams) -> list[int]:
        bad = [k for k in test_cams if not 0 <= k < len(self.cam_names)]
        if bad:
            raise UserError(f"test_cams {bad} out of range: the scene has {len(self.cam_names)} cameras")
        return sorted(set(int(k) for k in test_cams))

    @property
    def focal(self) -> float:
        """Focal length in pixels at the cached resolution."""
        return self.rig.hwf[2] * self.w / self.rig.hwf[1]

    def camera_rays(self, k: int, c2w_norm: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Rays of camera k (or of a given normalized pose [3, 4]) -> origins, dirs [H*W, 3] float32."""
        rays = pose_rays(self.c2w[k] if c2w_norm is None else c2w_norm, self.h, self.w, self.focal,
                         self.normalization)
        return rays.origins, rays.dirs

    def _train_rays(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Camera k's rays -> origins, dirs [H*W, 3] and near [H*W]: the ray parameter of the camera's near
        bound (its poses_bounds row: nothing of the scene is nearer), all float32."""
        rays = pose_rays(self.c2w[k], self.h, self.w, self.focal, self.normalization)
        z = torch.full((rays.cam_o.shape[0],), float(self.rig.bounds[k, 0]), dtype=torch.float64)
        near = camera_z_to_ray_param(z, rays.cam_o, rays.cam_d, self.normalization)
        return rays.origins, rays.dirs, near.float()

    def camera_table(self) -> dict:
        """The rig as stored in checkpoints: normalized c2w [K, 3, 4], size, focal, names, split, and
        near/far bounds [K, 2] in normalized units."""
        return {"c2w": np.asarray(self.c2w, dtype=np.float64), "hw": (self.h, self.w), "focal": self.focal,
                "names": list(self.cam_names), "test_idx": list(self.test_idx), "n_frames": self.n_frames,
                "bounds": np.asarray(self.rig.bounds * self.normalization.scale, dtype=np.float64),
                "frame_start": self.opts.frame_start}

    @property
    def n_train_rays(self) -> int:
        return self.train_origins.shape[0]

    def pixel_of(self, ray_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Train ray indices [B] -> (camera index [B], flat pixel index [B])."""
        hw = self.h * self.w
        return np.asarray(self.train_idx)[ray_idx // hw], ray_idx % hw

    def jittered_rays(self, cam: np.ndarray, pix: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        """Rays through uniformly random points of the given pixels (not their centres) -> origins, dirs [B, 3].
        cam: [B] camera index, pix: [B] flat pixel index."""
        xy = torch.from_numpy(np.stack([pix % self.w, pix // self.w], 1) + rng.random((len(pix), 2)))
        origins, dirs = torch.empty(len(pix), 3), torch.empty(len(pix), 3)
        for k in np.unique(cam):
            sel = torch.from_numpy(cam == k)
            rays = pose_rays(self.c2w[k], self.h, self.w, self.focal, self.normalization, xy[sel])
            origins[sel], dirs[sel] = rays.origins, rays.dirs
        return origins, dirs

    def gather(self, ray_idx: np.ndarray, rng: np.random.Generator | None = None, blur: float = 0.0,
               jitter: bool = False, static_target: str = "mean") -> RayBatch:
        """Train rays [B] with colours rgb [B, T, 3] float, std [B], near bounds [B] and, with dense depth,
        its targets [B]. With ``rng``: ``blur`` > 0 adds the static branch's target rgb_static [B, 3], the
        frame mean (or cached median or mode, ``static_target``) of one tap of a Gaussian of that many pixels
        (:mod:`dataLoader.target_blur`); ``jitter`` passes each ray through a random point of its pixel instead
        of its centre. A cached ``static_target`` (median, mode) always sets rgb_static (without blur: the
        ray's own pixel)."""
        ray_idx = np.asarray(ray_idx)
        cam, pix = self.pixel_of(ray_idx)
        idx = torch.from_numpy(ray_idx)
        if jitter:
            origins, dirs = self.jittered_rays(cam, pix, rng)
        else:
            origins, dirs = self.train_origins[idx], self.train_dirs[idx]
        std = self.cache.std.reshape(len(self.cam_names), -1)[cam, pix]
        batch = RayBatch(origins, dirs, rgb=self._colours(cam, pix), std=torch.from_numpy(std),
                         near=self.train_near[idx])
        if blur > 0:
            batch.rgb_static = self._static_colours(cam, blurred_pixels(pix, (self.h, self.w), blur, rng),
                                                    static_target)
        elif static_target in COLOUR_MAPS:
            batch.rgb_static = self._static_colours(cam, pix, static_target)
        if self.dense_depth is not None:
            batch.depth, batch.depth_sigma, batch.depth_weight = self.dense_depth.gather(idx)
        return batch

    def _colours(self, cam: np.ndarray, pix: np.ndarray) -> torch.Tensor:
        """Camera and flat pixel indices [B] -> float colours [B, T, 3] in [0, 1] (reads in storage order)."""
        frames = self.cache.frames.reshape(len(self.cam_names), self.h * self.w, self.n_frames, 3)
        order = np.lexsort((pix, cam))
        rgb = np.empty((len(cam), self.n_frames, 3), dtype=np.uint8)
        rgb[order] = frames[cam[order], pix[order]]
        return torch.from_numpy(rgb).float().div_(255)

    def _static_colours(self, cam: np.ndarray, pix: np.ndarray, static_target: str) -> torch.Tensor:
        """Camera and flat pixel indices [B] -> the static branch's colour targets [B, 3] float: the pixels'
        mean over frames, or their cached temporal median or mode."""
        if static_target in COLOUR_MAPS:
            cached = getattr(self.cache, static_target).reshape(len(self.cam_names), self.h * self.w, 3)[cam, pix]
            return torch.from_numpy(cached).float().div_(255)
        return self._colours(cam, pix).mean(1)

    def frames_of(self, k: int) -> np.ndarray:
        """uint8 [T, H, W, 3] frames of camera k."""
        return np.ascontiguousarray(np.moveaxis(np.asarray(self.cache.frames[k]), 2, 0))


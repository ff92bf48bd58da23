"""pycolmap wrappers: run SfM, read and write a model, match images to cameras by name.

The model's 3D points (camera z, bounds, the sparse depth table) are in :mod:`dataLoader.colmap_points`.

Conventions
-----------
- COLMAP stores world-to-camera poses with OpenCV camera axes [right, down,
  forward]. :func:`model_c2w` converts them once to the toolkit's OpenGL c2w
  ([right, up, back] columns + centre, see ``dataLoader.poses``); writing LLFF
  files then goes through ``dataLoader.poses.save_poses_bounds``.
- Images are always found **by name** (``Image.name`` in the model), never by
  COLMAP id or list position. A camera ``cam`` of a capture is the model image
  whose name without extension is ``prefix + cam`` (``cam00.png``,
  ``static/cam00.png``, or ``3.jpg`` for an LLFF ``images/`` folder).
- Units are COLMAP's world units (arbitrary scale) everywhere.
- Camera order: ``frames/camXX`` folders are sorted as strings (as the dataset
  lists them; names are expected zero-padded, cam00..camNN). Files of an LLFF
  ``images/`` folder are sorted numeric-aware (``2.jpg`` before ``10.jpg``).
"""
from __future__ import annotations

import contextlib
import logging
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pycolmap
from tqdm import tqdm

from core.errors import UserError
from dataLoader.atomic_io import atomic_dir
from dataLoader.scene_layout import SceneDir, image_files, image_size, list_cameras

log = logging.getLogger(__name__)

FOCAL_REL_TOL = 0.01  # cameras within 1% of each other may be merged into one shared intrinsic


# ----------------------------------------------------------------------------- image lists

def natural_key(name: str) -> tuple:
    """Numeric-aware sort key: ``"2.jpg" < "10.jpg"``."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def camera_folders(datadir: Path) -> list[Path]:
    """``frames/camXX`` folders in the dataset's (string) order; warns if they are not zero-padded."""
    dirs = list_cameras(datadir)
    if [d.name for d in dirs] != sorted((d.name for d in dirs), key=natural_key):
        log.warning("%s: camera folders are not zero-padded; rows follow string order %s",
                    SceneDir(datadir).frames, [d.name for d in dirs])
    return dirs


def list_capture_images(datadir: Path, frame_idx: int = 0, one_each: bool = False) -> list[tuple[str, Path]]:
    """(camera name, image file) per camera, in ``poses_bounds.npy`` row order.

    ``datadir/frames/camXX/``: the ``frame_idx``-th image (string order) of each camera
    folder; with ``one_each`` every folder must hold exactly one image (static capture).
    Otherwise ``datadir/images/*``: every image, numeric-aware order, named by file stem.
    """
    scene, out = SceneDir(datadir), []
    if scene.frames.is_dir() and one_each:
        camera_folders(scene.root)  # warns about the row order
        out = list(zip(*scene.one_image_per_camera()))
    elif scene.frames.is_dir():
        for cam in camera_folders(scene.root):
            files = image_files(cam)
            if not 0 <= frame_idx < len(files):
                raise UserError(f"{cam}: no frame {frame_idx} (the folder has {len(files)} images)")
            out.append((cam.name, files[frame_idx]))
    elif scene.images.is_dir():
        out = [(p.stem, p) for p in sorted(image_files(scene.images), key=lambda p: natural_key(p.name))]
    else:
        raise UserError(f"{datadir}: no images (expected frames/camXX/ folders or an images/ folder)")
    if not out or len({n for n, _ in out}) != len(out):
        raise UserError(f"{datadir}: no images, or several images per camera name ({[n for n, _ in out]})")
    return out


def common_image_size(paths: Sequence[Path], what: str) -> tuple[int, int]:
    """(H, W) shared by all images; UserError naming the sizes if they differ."""
    sizes = {p: image_size(p) for p in paths}
    if len(set(sizes.values())) != 1:
        detail = ", ".join(f"{p.parent.name}/{p.name} {h}x{w}" for p, (h, w) in sizes.items())
        raise UserError(f"{what}: images of different sizes in one rig ({detail}; H x W)")
    return next(iter(sizes.values()))


# ----------------------------------------------------------------------------- running SfM

@dataclass(frozen=True)
class ImageGroup:
    """Images extracted with one camera setting (one shared camera when ``single_camera``).

    names: image names inside the model (may contain a folder, e.g. ``static/cam00.png``).
    paths: source files, same order. focal_prior: focal in pixels of these images, or None.
    """

    names: tuple[str, ...]
    paths: tuple[Path, ...]
    focal_prior: float | None = None


def stage_images(groups: Sequence[ImageGroup], image_dir: Path) -> None:
    """Link (or copy) every source file into ``image_dir`` under its model name."""
    for g in groups:
        for name, src in zip(g.names, g.paths, strict=True):
            dst = image_dir / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                dst.symlink_to(Path(src).resolve())
            except OSError:
                shutil.copy2(src, dst)


def _reader_options(focal_prior: float | None, hw: tuple[int, int]) -> pycolmap.ImageReaderOptions:
    """SIMPLE_PINHOLE (f, cx, cy): the loader's model (fx = fy, centred principal point, no distortion)."""
    opts = pycolmap.ImageReaderOptions()
    opts.camera_model = "SIMPLE_PINHOLE"
    if focal_prior is not None:
        opts.camera_params = f"{focal_prior},{hw[1] / 2},{hw[0] / 2}"
    return opts


@contextlib.contextmanager
def colmap_log_level() -> Iterator[None]:
    """COLMAP's own (glog) lines: all when this module logs at DEBUG, else errors only; restored after."""
    old = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 0 if log.isEnabledFor(logging.DEBUG) else 2
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = old


@dataclass(frozen=True)
class SfmOptions:
    """single_camera: one COLMAP camera per :class:`ImageGroup` (else one per image).
    refine_focal: let bundle adjustment refine focal lengths (turn off with a trusted
    focal prior: forward-facing rigs with small baselines self-calibrate poorly).
    seed: RANSAC / first mapper seed; attempts: mapper runs with seeds seed, seed + 1, ... while images
    are missing; num_threads: -1 = all cores.
    """

    single_camera: bool = True
    refine_focal: bool = True
    seed: int = 0
    num_threads: int = -1
    attempts: int = 4


def run_sfm(groups: Sequence[ImageGroup], workspace: Path,
            options: SfmOptions = SfmOptions()) -> pycolmap.Reconstruction:
    """SIFT extraction (CPU), exhaustive matching and incremental mapping of all images.

    ``workspace`` (an empty scratch folder) receives ``images/``, ``database.db`` and ``sparse<seed>/``.
    The mapper keeps every model it builds (``multiple_models``); the largest wins. While images are
    missing, mapping is retried with the next seeds (a bad initial pair can end a reconstruction early),
    up to ``options.attempts`` runs. Raises UserError naming the images still not registered and their
    verified matches (why they were left out).
    """
    workspace = Path(workspace)
    stage_images(groups, workspace / "images")
    names = [n for g in groups for n in g.names]
    folders = ", ".join(sorted({str(Path(p).parent.parent) for g in groups for p in g.paths}))
    with colmap_log_level():
        extract_and_match(groups, workspace, options)
        rec, tried = best_of_seeds(lambda seed: _map(workspace, len(names), options, seed), options, len(names))
    if rec is None:
        raise UserError(f"{folders}: SfM built no model from {len(names)} images with seeds {tried} (too "
                        "little texture or overlap?); not registered: " + ", ".join(names))
    registered = {im.name for im in rec.images.values() if im.has_pose}
    missing = [n for n in names if n not in registered]
    if missing:
        why = verified_matches(workspace / "database.db", missing)
        raise UserError(f"{folders}: SfM registered {len(names) - len(missing)} of {len(names)} images with "
                        f"seeds {tried}; not registered: "
                        + ", ".join(f"{n} ({why[n]} verified matches)" for n in missing))
    log.info("SfM: %s", rec.summary().replace("\n", " ").replace("\t", ""))
    return rec


def best_of_seeds(mapper: Callable[[int], dict], options: SfmOptions,
                  n_images: int) -> tuple[pycolmap.Reconstruction | None, list[int]]:
    """Run ``mapper(seed)`` (-> models by index) for seeds options.seed, +1, ... until one model registers
    all ``n_images`` or ``options.attempts`` runs are spent; -> (largest model seen or None, seeds tried)."""
    best, tried = None, []
    for seed in range(options.seed, options.seed + max(1, options.attempts)):
        tried.append(seed)
        for rec in mapper(seed).values():
            if best is None or rec.num_reg_images() > best.num_reg_images():
                best = rec
        if best is not None and best.num_reg_images() >= n_images:
            break
        log.info("SfM: seed %d registered %d of %d images%s", seed, 0 if best is None else best.num_reg_images(),
                 n_images, "; retrying with the next seed" if seed + 1 < options.seed + options.attempts else "")
    return best, tried


def verified_matches(db_path: Path, names: Sequence[str]) -> dict[str, int]:
    """Geometrically verified inlier matches of each named image with all others (from the database)."""
    db = pycolmap.Database.open(db_path)
    try:
        ids = {im.image_id: im.name for im in db.read_all_images()}
        counts = dict.fromkeys(ids.values(), 0)
        pair_ids, geometries = db.read_two_view_geometries()
        for pair_id, geom in zip(pair_ids, geometries, strict=True):
            a, b = pycolmap.pair_id_to_image_pair(pair_id)
            n = len(geom.inlier_matches)
            counts[ids[a]] += n
            counts[ids[b]] += n
    finally:
        db.close()
    return {n: counts.get(n, 0) for n in names}


def extract_and_match(groups: Sequence[ImageGroup], workspace: Path, opt: SfmOptions) -> None:
    """SIFT features of every group's images (one camera per group when single_camera, with the group's
    focal prior) and exhaustive, verified matching into ``workspace/database.db``."""
    image_dir, db = workspace / "images", workspace / "database.db"
    mode = pycolmap.CameraMode.SINGLE if opt.single_camera else pycolmap.CameraMode.PER_IMAGE
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = opt.num_threads
    n_images = sum(len(g.names) for g in groups)
    log.info("SfM 1/3: extracting SIFT features from %d images", n_images)
    for g in groups:
        hw = common_image_size(g.paths, str(Path(g.paths[0]).parent))
        pycolmap.extract_features(db, image_dir, image_names=list(g.names), camera_mode=mode,
                                  reader_options=_reader_options(g.focal_prior, hw),
                                  extraction_options=extraction, device=pycolmap.Device.cpu)
    log.info("SfM 2/3: exhaustive matching")
    matching, verification = pycolmap.FeatureMatchingOptions(), pycolmap.TwoViewGeometryOptions()
    matching.num_threads, verification.ransac.random_seed = opt.num_threads, opt.seed
    pycolmap.match_exhaustive(db, matching_options=matching, verification_options=verification,
                              device=pycolmap.Device.cpu)


def mapping_options(opt: SfmOptions, seed: int) -> pycolmap.IncrementalPipelineOptions:
    mapping = pycolmap.IncrementalPipelineOptions()
    mapping.multiple_models, mapping.random_seed, mapping.num_threads = True, seed, opt.num_threads
    mapping.ba_refine_focal_length = mapping.mapper.abs_pose_refine_focal_length = opt.refine_focal
    return mapping


def _map(workspace: Path, n_images: int, opt: SfmOptions, seed: int) -> dict[int, pycolmap.Reconstruction]:
    out = workspace / f"sparse{seed}"
    out.mkdir(exist_ok=True)
    with tqdm(total=n_images, desc=f"SfM 3/3: incremental mapping (seed {seed})", unit="img") as bar:
        return pycolmap.incremental_mapping(workspace / "database.db", workspace / "images", out,
                                            mapping_options(opt, seed),
                                            initial_image_pair_callback=lambda: bar.update(2),
                                            next_image_callback=lambda: bar.update(1))


# ----------------------------------------------------------------------------- reading models

def read_model(path: str | Path) -> pycolmap.Reconstruction:
    """Read a ``sparse/0`` model (binary or text); UserError when missing, unreadable or empty."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: COLMAP model folder not found")
    if not any((path / f"images{ext}").is_file() for ext in (".bin", ".txt")):
        raise UserError(f"{path}: no COLMAP model here (images.bin / images.txt missing)")
    try:
        rec = pycolmap.Reconstruction(path)
    except Exception as exc:  # pycolmap raises plain RuntimeError/ValueError on bad files
        raise UserError(f"{path}: unreadable COLMAP model ({exc})") from None
    if rec.num_reg_images() == 0 or rec.num_points3D() == 0:
        raise UserError(f"{path}: empty COLMAP model ({rec.num_reg_images()} registered images, "
                        f"{rec.num_points3D()} points)")
    return rec


def _strip_ext(name: str) -> str:
    stem, dot, ext = name.rpartition(".")
    return stem if dot and "/" not in ext else name


def image_ids_for_cameras(rec: pycolmap.Reconstruction, cams: Sequence[str], prefix: str = "",
                          source: str = "model") -> list[int]:
    """COLMAP image id of each camera (same order), found by name: ``name - ext == prefix + cam``.

    Raises UserError naming cameras with no (or an ambiguous, or an unregistered) image.
    """
    by_key: dict[str, list[int]] = {}
    for iid, im in rec.images.items():
        by_key.setdefault(_strip_ext(im.name), []).append(iid)
    absent = [c for c in cams if len(by_key.get(prefix + c, [])) != 1]
    if absent:
        have = sorted((im.name for im in rec.images.values()), key=natural_key)
        raise UserError(f"{source}: no unique image named '{prefix}<camera>.<ext>' for camera(s) "
                        f"{', '.join(absent)}; the model's images are {', '.join(have)}")
    ids = [by_key[prefix + c][0] for c in cams]
    unposed = [c for c, i in zip(cams, ids, strict=True) if not rec.images[i].has_pose]
    if unposed:
        raise UserError(f"{source}: camera(s) {', '.join(unposed)} are in the model but not registered")
    return ids


def model_w2c(rec: pycolmap.Reconstruction, ids: Sequence[int]) -> np.ndarray:
    """[K, 3, 4] COLMAP world-to-camera matrices (OpenCV axes) of the given image ids."""
    poses = [rec.images[i].cam_from_world for i in ids]  # a method in pycolmap >= 3.12, else a property
    return np.stack([np.asarray((p() if callable(p) else p).matrix(), dtype=np.float64) for p in poses])


def opencv_w2c_to_opengl_c2w(w2c: np.ndarray) -> np.ndarray:
    """[K, 3, 4] world-to-camera, OpenCV [right, down, forward] -> [K, 3, 4] c2w, OpenGL [right, up, back]."""
    rot_c2w = np.swapaxes(w2c[:, :, :3], 1, 2)
    centre = -np.einsum("kij,kj->ki", rot_c2w, w2c[:, :, 3])
    rot_gl = rot_c2w * np.array([1.0, -1.0, -1.0])  # flip the y and z columns
    return np.concatenate([rot_gl, centre[:, :, None]], axis=-1)


def model_c2w(rec: pycolmap.Reconstruction, ids: Sequence[int]) -> np.ndarray:
    """[K, 3, 4] OpenGL camera-to-world poses (world = COLMAP world) of the given image ids."""
    return opencv_w2c_to_opengl_c2w(model_w2c(rec, ids))


# ----------------------------------------------------------------------------- intrinsics, bounds, keypoints

def shared_intrinsics(cameras: Sequence[pycolmap.Camera], *, allow_average: bool = False,
                      source: str = "model") -> tuple[float, float, float]:
    """One (H, W, focal) for a rig, as the loader needs one shared intrinsic.

    H, W: the median camera size; focal: mean of each camera's focal rescaled to that
    width. Cameras whose sizes or focals differ are merged with a warning when within
    1%; beyond that UserError unless ``allow_average``.
    """
    h = np.array([c.height for c in cameras], dtype=np.float64)
    w = np.array([c.width for c in cameras], dtype=np.float64)
    f = np.array([c.mean_focal_length() for c in cameras]) * (np.median(w) / w)
    spread = max(np.ptp(f) / f.mean(), np.ptp(w) / w.mean(), np.ptp(h) / h.mean())
    if spread > 0:
        what = (f"{len({c.camera_id for c in cameras})} COLMAP cameras (focal {f.min():.2f}..{f.max():.2f} px, "
                f"sizes {int(w.min())}..{int(w.max())} x {int(h.min())}..{int(h.max())})")
        if spread > FOCAL_REL_TOL and not allow_average:
            raise UserError(f"{source}: {what} differ by {100 * spread:.2f}% (> {100 * FOCAL_REL_TOL:.0f}%); "
                            "the loader needs one shared intrinsic (allow averaging with --average_intrinsics 1)")
        log.warning("%s: %s differ by %.2f%%; using their average", source, what, 100 * spread)
    return float(np.round(np.median(h))), float(np.round(np.median(w))), float(f.mean())


# ----------------------------------------------------------------------------- pose agreement

def check_same_world(c2w_file: np.ndarray, c2w_model: np.ndarray, names: Sequence[str], near: float,
                     source: str, rot_tol_deg: float = 0.1, rel_tol: float = 1e-3) -> None:
    """UserError naming the cameras whose poses (both [K, 3, 4] OpenGL c2w) disagree.

    Rotation tolerance in degrees; centre tolerance relative to the larger of the rig's
    radius and ``near`` (the smallest near bound, so a single camera is judged too).
    """
    rel = np.einsum("kji,kjl->kil", c2w_file[:, :, :3], c2w_model[:, :, :3])
    ang = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    centres = c2w_model[:, :, 3]
    extent = max(float(np.linalg.norm(centres - centres.mean(0), axis=1).max()), near)
    dist = np.linalg.norm(c2w_file[:, :, 3] - centres, axis=1) / extent
    bad = [f"{n} ({a:.3g} deg, {d * extent:.3g} units)"
           for n, a, d in zip(names, ang, dist, strict=True) if a > rot_tol_deg or d > rel_tol]
    if bad:
        raise UserError(f"{source}: poses disagree with the COLMAP model (not the same world) for "
                        f"camera(s) {', '.join(bad)}; rerun imgs2poses.py or pass the matching --sparse_dir")


def read_model_in_world(sparse_dir: str | Path, c2w: np.ndarray, near: float, cams: Sequence[str],
                        prefix: str = "", source: str | None = None) -> tuple[pycolmap.Reconstruction, list[int]]:
    """(model, image ids of ``cams``) of the model at ``sparse_dir``, after checking that those images sit at
    the OpenGL world poses c2w [K, 3, 4] (``near``: the rig's smallest near bound, for the tolerance)."""
    rec = read_model(sparse_dir)
    ids = image_ids_for_cameras(rec, list(cams), prefix, source=str(sparse_dir))
    check_same_world(c2w, model_c2w(rec, ids), list(cams), near, source or str(sparse_dir))
    return rec, ids


# ----------------------------------------------------------------------------- writing

def write_model(rec: pycolmap.Reconstruction, dest: str | Path) -> None:
    """Write ``rec`` (binary) to ``dest`` atomically, replacing an existing model there."""
    with atomic_dir(dest, overwrite=True) as tmp:
        rec.write(tmp)

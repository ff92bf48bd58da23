"""Quality on scenes the defaults were not tuned on: a family of synthetic dynamic scenes.

Six scenes (not the demo scene) that differ in seed, texture (smooth / detailed / brick), camera
count (4-10), rig (``ellipse``: the N3DV-like rig of issue 14, cam00 at the centre of a small
ellipse; ``forward``: cam00 inside rings; one wider baseline) and motion amount, 30 frames each.
For a config and iteration budget every scene is trained from scratch and its test camera (cam00)
scored: one JSON line per scene (test PSNR, SSIM, depth AbsRel / delta<1.25 against gt_depth, the median
rendered / true depth on never-moving pixels nearer and farther than their median depth, train time) and a
summary line with the means. The first line is the command that reproduces the row.

``--static``: each scene's still capture instead (``prepare_static`` -> ``train.py`` with ``--config``, e.g.
``configs/demo_static.txt`` -> ``static_model2depth`` into the scene's ``depth/all_depth.npz``): held-out view
PSNR and the exported depth at the video cameras against the static world's exact depth (median relative
error, coverage). A later run with ``--extra --depth_config configs/depth/static_model.txt`` trains on it.

``--profile CKPT``: where a trained model puts its static rendering weight: per camera, the mean opacity
and the weight in each tenth of the ray parameter (NDC t), a floater diagnostic.

``--depth_gain``: the acceptance check of depth distillation on the family, per scene: the still capture through
``--static_config`` and the export (as ``--static``), then ``--config`` without and with ``--depth_config``;
per-scene dPSNR and AbsRel ratio, and the family means.

``--video_depth``: each scene's plane-sweep depth first (``video2depth``'s library call into the scene's
``depth/video_depth.npz``; its median relative error and coverage against the static world's exact depth), then
the dynamic run with it (``--depth_config configs/depth/video_mvs.txt`` before ``--extra``).

``--curve ITERS...``: one scene (the first of ``--scenes``), test PSNR at those iterations of one run
(train time excludes the evaluations), written as JSON and plotted to ``--png``.

Usage: python -m bench.quality [--config configs/demo.txt] [--base_config F] [--iters N]
       [--scenes NAME ...] [--workdir data/quality_family] [--curve 100 200 400 800]
       [--static | --depth_gain | --video_depth]
       [--extra FLAGS...]
Scenes are written once to WORKDIR/scenes (about a minute each) and reused.
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from bench.depth_gain import evaluate_test, static_depth_quality
from core.errors import UserError
from dataLoader.dataset import VideoDataset
from dataLoader.depth_files import save_dense_depth
from dataLoader.scene_layout import VIDEO_DEPTH, SceneDir
from engine import options
from engine.checkpoint import load_model
from engine.evaluation.visualize import plot_training_curves
from engine.option_groups import data_options
from engine.plane_sweep import video_depth
from engine.render.static_depth import ExportOptions, export_depth_file, prepare_static_capture
from engine.train.trainer import Trainer
from models.types import RayBatch
from synthetic.scene import write_scene

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class FamilyScene:
    """One member of the family (arguments of :func:`synthetic.scene.write_scene`)."""

    name: str
    rig: str
    n_cams: int
    texture: str
    seed: int
    rig_spread: float
    motion_scale: float
    fov_deg: float
    n_frames: int = 30
    width: int = 96
    height: int = 72


ELLIPSE_FOV = 71.08  # focal 0.7 W, as the rig of issue 14
FAMILY = (
    FamilyScene("ell8_brick", "ellipse", 8, "brick", 11, 0.3, 1.0, ELLIPSE_FOV),
    FamilyScene("fwd6_smooth", "forward", 6, "smooth", 12, 0.6, 1.0, 55.0),
    FamilyScene("fwd10_detailed", "forward", 10, "detailed", 13, 0.6, 0.5, 55.0),
    FamilyScene("ell4_detailed", "ellipse", 4, "detailed", 14, 0.3, 1.0, ELLIPSE_FOV),
    FamilyScene("fwd5_wide_brick", "forward", 5, "brick", 15, 1.2, 1.5, 55.0),
    FamilyScene("ell6_smooth_slow", "ellipse", 6, "smooth", 16, 0.3, 0.4, ELLIPSE_FOV),
)
# Not in the default family: the issue-14 rig at its full 128x96 size, for the scaled MixVoxels-T check
# (--base_config configs/base/T.txt, see BENCHMARKS.md).
EXTRA = (FamilyScene("ell8_brick_128", "ellipse", 8, "brick", 21, 0.3, 1.0, ELLIPSE_FOV, width=128, height=96),)
BY_NAME = {s.name: s for s in FAMILY + EXTRA}
GAIN_MIN_DB, GAIN_MAX_ABS_REL_RATIO = 1.5, 0.5  # issue 14's target for static-model depth over none


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def ensure_scene(spec: FamilyScene, root: Path, n_static_views: int = 16) -> Path:
    """Write the scene under root/<name> unless a meta.json with the same parameters is there."""
    out = root / spec.name
    meta = out / "meta.json"
    want = asdict(spec)
    if meta.is_file() and json.loads(meta.read_text()).get("family_spec") == want:
        return out
    write_scene(out, seed=spec.seed, n_cams=spec.n_cams, n_frames=spec.n_frames, width=spec.width,
                height=spec.height, rig=spec.rig, rig_spread=spec.rig_spread, n_static_views=n_static_views,
                supersample=2, video=False, fov_deg=spec.fov_deg, overwrite=True, texture=spec.texture,
                motion_scale=spec.motion_scale)
    m = json.loads(meta.read_text())
    m["family_spec"] = want
    meta.write_text(json.dumps(m, indent=1, sort_keys=True) + "\n")
    return out


def train_argv(args, datadir: Path, expname: str) -> list[str]:
    argv = []
    if args.base_config:
        argv += ["--base_config", args.base_config]
    if args.config:
        argv += ["--config", args.config]
    argv += ["--datadir", str(datadir), "--basedir", str(args.workdir / "runs"),
             "--expname", expname, "--overwrite", "1", "--render_test", "0", "--save_every", "100000000",
             "--seed", str(args.seed), "--device", args.device]
    if args.iters:
        argv += ["--n_iters", str(args.iters)]
    return argv + list(args.extra)


class CurveTrainer(Trainer):
    """A Trainer that scores the test camera at given iterations (evaluation time not counted)."""

    def __init__(self, cfg, at: list[int]):
        super().__init__(cfg)
        self.curve_at = set(at)
        self.curve: list[dict] = []

    def after_step(self) -> None:
        super().after_step()
        if self.step in self.curve_at:
            t0 = time.perf_counter()
            metrics, _ = evaluate_test(self)
            self.model.train()
            self.curve.append({"iteration": self.step, "train_time_s": round(self.elapsed, 1),
                               "psnr": metrics["psnr"], "ssim": metrics["ssim"],
                               "depth_abs_rel": metrics["depth"].get("abs_rel"),
                               "depth_ratio_static": metrics["depth_ratio_static"]})
            emit({"curve_point": True, **self.curve[-1]})
            self.elapsed -= time.perf_counter() - t0  # the loop's clock restarts from elapsed


def run_scene(args, spec: FamilyScene) -> dict:
    datadir = ensure_scene(spec, args.workdir / "scenes")
    trainer = Trainer(options.resolve(options.parse(train_argv(args, datadir, f"{args.tag}_{spec.name}"))))
    trainer.fit()
    metrics, _ = evaluate_test(trainer)
    return {"scene": spec.name, "psnr": metrics["psnr"], "ssim": metrics["ssim"],
            "depth_abs_rel": metrics["depth"].get("abs_rel"), "depth_delta_1_25": metrics["depth"].get("delta_1_25"),
            "depth_ratio_static": metrics["depth_ratio_static"],
            "train_time_s": metrics["train_time_s"], "iterations": metrics["iterations"],
            "n_cams": spec.n_cams, "texture": spec.texture, "rig": spec.rig}


def run_static(args, spec: FamilyScene) -> dict:
    """The scene's still capture -> static model (args.config) -> depth maps at the video cameras."""
    scene = ensure_scene(spec, args.workdir / "scenes")
    prepare_static_capture(scene / "static")
    argv = train_argv(args, scene / "static", f"{args.tag}_static_{spec.name}")
    trainer = Trainer(options.resolve(options.parse(argv)))
    trainer.fit()
    held_out, _ = evaluate_test(trainer)
    depth_file = SceneDir(scene).dense_depth  # where configs/depth/static_model.txt reads it
    ckpt, refused = trainer.run_dir / "ckpt.pt", None
    try:
        export_depth_file(ckpt, scene, depth_file, overwrite=True, device=args.device)
    except UserError as e:  # the consistency check refused the export: measure what it would have written
        refused = str(e)
        export_depth_file(ckpt, scene, depth_file, overwrite=True, device=args.device,
                          opts=ExportOptions(allow_inconsistent=True))
    quality = static_depth_quality(scene, depth_file, spec.seed)
    return {"scene": spec.name, "refused": refused, "held_out_psnr": held_out["psnr"],
            "views": len(trainer.data.cam_names),
            "depth_median_rel_err": quality["median_rel_err"], "depth_abs_rel": quality["abs_rel"],
            "coverage": quality["coverage"], "train_time_s": held_out["train_time_s"]}


def run_video_depth(args, spec: FamilyScene) -> dict:
    """The scene's plane-sweep depth (video2depth's defaults) -> the dynamic run supervised by it."""
    scene = ensure_scene(spec, args.workdir / "scenes")
    depth_file = SceneDir(scene).resolve(VIDEO_DEPTH)  # where configs/depth/video_mvs.txt reads it
    data = VideoDataset(data_options(options.resolve(options.parse(train_argv(args, scene, "video_depth")))))
    save_dense_depth(depth_file, video_depth(data)[0])
    quality = static_depth_quality(scene, depth_file, spec.seed)
    row = run_scene(with_args(args, extra=["--depth_config", "configs/depth/video_mvs.txt", *args.extra]), spec)
    return {**row, "video_depth_median_rel_err": quality["median_rel_err"], "video_depth_coverage": quality["coverage"]}


def with_args(args, **changes) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), **changes})


def run_depth_gain(args, spec: FamilyScene) -> dict:
    """The scene's still capture -> static model (--static_config) -> exported depth; then the dynamic run
    (args.config) without and with that depth (--depth_config): the gain of static-model depth."""
    static = run_static(with_args(args, config=args.static_config, base_config="", iters=0, extra=[]), spec)
    none = run_scene(with_args(args, tag=f"{args.tag}_none"), spec)
    depth = run_scene(with_args(args, tag=f"{args.tag}_depth", extra=[*args.extra, "--depth_config",
                                                                       args.depth_config]), spec)
    return {"scene": spec.name, "export_median_rel_err": static["depth_median_rel_err"],
            "psnr_none": none["psnr"], "psnr_depth": depth["psnr"], "dpsnr": depth["psnr"] - none["psnr"],
            "abs_rel_none": none["depth_abs_rel"], "abs_rel_depth": depth["depth_abs_rel"],
            "abs_rel_ratio": depth["depth_abs_rel"] / none["depth_abs_rel"],
            "train_time_s": static["train_time_s"] + none["train_time_s"] + depth["train_time_s"]}


def gain_summary(rows: list[dict]) -> dict:
    """Family means of a --depth_gain run: mean dPSNR and the ratio of the mean AbsRels."""
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("dpsnr", "psnr_none", "psnr_depth",
                                                               "abs_rel_none", "abs_rel_depth")}
    return {"summary": True, "mean": mean, "abs_rel_ratio_of_means": mean["abs_rel_depth"] / mean["abs_rel_none"],
            "scenes_meeting_both": sum(r["dpsnr"] >= GAIN_MIN_DB and r["abs_rel_ratio"] <= GAIN_MAX_ABS_REL_RATIO
                                       for r in rows),
            "n_scenes": len(rows)}


@torch.no_grad()
def weight_profile(ckpt: Path, every: int = 7) -> None:
    """Per camera of the checkpoint's scene: mean static opacity and weight per decile of t (every 7th pixel)."""
    model, norm, state = load_model(ckpt)
    data = VideoDataset(data_options(argparse.Namespace(**state["config"])), normalization=norm)
    edges = torch.linspace(0, 1, 11)
    for k in range(len(data.cam_names)):
        origins, dirs = data.camera_rays(k)
        idx = torch.arange(0, origins.shape[0], every)
        out = model.eval()(RayBatch(origins[idx], dirs[idx]), ray_dynamic=torch.zeros(len(idx), dtype=torch.bool))
        bins = [float((out.weights * ((out.t >= a) & (out.t < b))).sum(-1).mean()) for a, b in zip(edges, edges[1:])]
        emit({"camera": data.cam_names[k], "test": k in data.test_idx, "acc": round(float(out.acc.mean()), 3),
              "weight_by_t_decile": [round(b, 3) for b in bins]})


def run_curve(args) -> None:
    spec = BY_NAME[args.scenes[0]]
    datadir = ensure_scene(spec, args.workdir / "scenes")
    cfg = options.resolve(options.parse(train_argv(args, datadir, f"{args.tag}_curve_{spec.name}")))
    trainer = CurveTrainer(cfg, args.curve)
    trainer.fit()
    png = args.png or args.workdir / f"curve_{args.tag}_{spec.name}.png"
    history = {**trainer.history, "test_iteration": [p["iteration"] for p in trainer.curve],
               "test_psnr": [p["psnr"] for p in trainer.curve],
               "test_time_s": [p["train_time_s"] for p in trainer.curve]}
    plot_training_curves(history, png)
    emit({"summary": True, "scene": spec.name, "curve": trainer.curve, "png": str(png)})


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/demo.txt",
                   help="scene config (its datadir is replaced); '' for none (--base_config alone)")
    p.add_argument("--base_config", default="", help="optional schedule file, e.g. configs/base/T.txt")
    p.add_argument("--iters", type=int, default=0, help="iterations (0: the config's n_iters)")
    p.add_argument("--scenes", nargs="+", default=[s.name for s in FAMILY], choices=sorted(BY_NAME))
    p.add_argument("--workdir", type=Path, default=ROOT / "data" / "quality_family")
    p.add_argument("--tag", default="q", help="run-name prefix under WORKDIR/runs")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--device", default="cpu")
    p.add_argument("--profile", type=Path, default=None, help="checkpoint: print its weight profile (see above)")
    p.add_argument("--static", action="store_true", help="train and export the still captures (see above)")
    p.add_argument("--depth_gain", action="store_true",
                   help="per scene: still capture -> --static_config -> export, then --config without and with "
                        "--depth_config; prints the gain of static-model depth and the family means")
    p.add_argument("--static_config", default="configs/demo_static.txt", help="--depth_gain: static model config")
    p.add_argument("--depth_config", default="configs/depth/static_model.txt", help="--depth_gain: depth overlay")
    p.add_argument("--video_depth", action="store_true",
                   help="per scene: plane-sweep depth of its videos, then --config with configs/depth/video_mvs.txt")
    p.add_argument("--curve", type=int, nargs="*", default=[], help="iterations at which to score (one scene)")
    p.add_argument("--png", type=Path, default=None, help="curve plot (default WORKDIR/curve_TAG_SCENE.png)")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="train.py flags for every run")
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    args.workdir = args.workdir.resolve()
    emit({"command": "python -m bench.quality " + " ".join(shlex.quote(a) for a in sys.argv[1:])})
    if args.profile:
        weight_profile(args.profile)
        return
    if args.curve:
        run_curve(args)
        return
    t0 = time.perf_counter()
    rows = []
    run = run_depth_gain if args.depth_gain else run_static if args.static else \
        run_video_depth if args.video_depth else run_scene
    for name in args.scenes:
        rows.append(run(args, BY_NAME[name]))
        emit(rows[-1])
    if args.depth_gain:
        emit({**gain_summary(rows), "total_s": round(time.perf_counter() - t0, 1)})
        return
    keys = [k for k, v in rows[0].items() if isinstance(v, float)]
    mean = {k: float(np.mean([r[k] for r in rows if r[k] is not None])) for k in keys}
    psnr = "held_out_psnr" if args.static else "psnr"
    emit({"summary": True, "mean": mean, "min_psnr": min(r[psnr] for r in rows),
          "max_depth_abs_rel": max(r["depth_abs_rel"] for r in rows), "n_scenes": len(rows),
          "total_s": round(time.perf_counter() - t0, 1), "machine": platform.processor() or platform.machine(),
          "cpu_threads": torch.get_num_threads(), "torch": torch.__version__})


if __name__ == "__main__":
    main()

"""Long videos as fragments: split a frame range, train each fragment as a normal run, stitch videos.

A fragment is the run ``--frame_start S --n_frames L`` of the same config, named
``<expname>_f{S:05d}`` (run dir ``<basedir>/<expname>_fSSSSS/``). Fragments are trained one after
another in this process (CPU or one GPU), or with several devices one process per device
(``torch.multiprocessing`` spawn), fragments dealt round-robin to the devices. A fragment whose run
dir already holds a finished checkpoint and metrics is skipped; an unfinished one is resumed
(``--resume 1``), so re-running the same command after a crash continues the series.

:func:`render_fragments` renders the same video from every fragment checkpoint and joins the
videos in frame order into one mp4 (ffmpeg concat, no re-encoding).
"""
from __future__ import annotations

import gc
import logging
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import torch

from core.errors import UserError
from dataLoader.atomic_io import atomic_dir, atomic_path
from dataLoader.frame_cache import scan_frames
from dataLoader.scene_layout import SceneDir
from dataLoader.video_io import probe_video
from engine import options
from engine.cli import refuse_existing
from engine.train.setup import config_differences, describe_differences

log = logging.getLogger(__name__)
FRAGMENT_KEYS = {"frame_start", "n_frames"}  # the config keys that differ between fragments of one series


@dataclass(frozen=True)
class Fragment:
    """Frames [start, start + n_frames) of the video."""

    start: int
    n_frames: int

    @property
    def suffix(self) -> str:
        return f"_f{self.start:05d}"


def plan_fragments(total: int, fragment_len: int, frame_start: int = 0, n_frames: int = -1,
                   where: str = "frames") -> list[Fragment]:
    """Split [frame_start, frame_start + n_frames) (n_frames < 0: to the end) of a ``total``-frame video
    into consecutive fragments of ``fragment_len`` frames (the last one may be shorter)."""
    if fragment_len <= 0:
        raise UserError(f"--fragment_len must be positive, got {fragment_len}")
    end = total if n_frames < 0 else frame_start + n_frames
    if frame_start < 0 or end <= frame_start:
        raise UserError(f"{where}: empty or negative frame range [{frame_start}, {end})")
    if end > total:
        raise UserError(f"{where}: frame range [{frame_start}, {end}) is past the video's end ({total} frames)")
    return [Fragment(s, min(fragment_len, end - s)) for s in range(frame_start, end, fragment_len)]


def fragment_argv(argv: list[str], base_expname: str, frag: Fragment) -> list[str]:
    """The training command line of one fragment (later flags win over ``argv``'s)."""
    return [*argv, "--frame_start", str(frag.start), "--n_frames", str(frag.n_frames),
            "--expname", base_expname + frag.suffix]


def _resume_flags(cfg) -> list[str] | None:
    """[] for a fresh run, resume flags for an unfinished one, None for a finished one (skip)."""
    from engine.checkpoint import load_checkpoint

    ckpt = Path(cfg.basedir) / cfg.expname / "ckpt.pt"
    if cfg.overwrite or cfg.resume or not ckpt.is_file():
        return []
    state = load_checkpoint(ckpt)
    diff = config_differences(state["config"], vars(cfg))
    if diff:
        raise UserError(f"{ckpt}: this fragment was trained with another config "
                        f"({describe_differences(state['config'], vars(cfg), diff)}); pass --overwrite 1 to "
                        f"retrain the fragments, or use another --expname")
    if state["step"] >= cfg.n_iters and (ckpt.parent / "metrics.json").is_file():
        return None
    return ["--resume", "1", "--ckpt", str(ckpt)]


def train_one(argv: list[str]) -> str:
    """Train (or resume, or skip) one fragment run; returns its summary line."""
    from engine.train.trainer import Trainer  # heavy imports only where training happens
    from engine.workflow import finish_training

    cfg = options.resolve(options.parse(argv))
    flags = _resume_flags(cfg)
    if flags is None:
        return f"{cfg.expname}: already trained, skipped"
    if flags:
        log.info("%s: resuming %s", cfg.expname, flags[-1])
        cfg = options.resolve(options.parse([*argv, *flags]))
    trainer = Trainer(cfg)
    summary = f"{cfg.expname}: " + finish_training(trainer, trainer.fit())
    del trainer
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return summary


def _worker(rank: int, jobs: list[list[str]], devices: list[str], queue) -> None:
    """One process per device: trains jobs rank, rank + n, ...; reports (rank, ok, line) on ``queue``."""
    from engine.cli import setup_logging

    setup_logging()
    device = devices[rank]
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    for job in jobs[rank::len(devices)]:
        try:
            queue.put((rank, True, train_one([*job, "--device", device])))
        except UserError as exc:
            queue.put((rank, False, str(exc)))
            return


def parse_devices(spec: str) -> list[str]:
    """"0,1" -> ["cuda:0", "cuda:1"]; "cpu" entries stay "cpu"; "" -> []."""
    devices = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        if item == "cpu" or item.startswith("cuda"):
            devices.append(item)
        elif item.isdigit():
            devices.append(f"cuda:{item}")
        else:
            raise UserError(f"--gpus {spec!r}: expected comma-separated GPU indices such as 0,1")
    n_cuda = torch.cuda.device_count()
    bad = [d for d in devices if d.startswith("cuda") and torch.device(d).index is not None
           and torch.device(d).index >= n_cuda]
    if bad:
        raise UserError(f"--gpus {spec!r}: {', '.join(bad)} not available ({n_cuda} CUDA devices)")
    return devices


def train_fragments(argv: list[str], fragment_len: int, devices: list[str]) -> str:
    """Train every fragment of the config's frame range; returns a summary (with the stitch command)."""
    cfg = options.resolve(options.parse(argv))
    src = scan_frames(Path(cfg.datadir), exclude=tuple(cfg.exclude_cams))
    total = len(src.files[0])
    frags = plan_fragments(total, fragment_len, cfg.frame_start, cfg.n_frames,
                           where=str(SceneDir(cfg.datadir).frames))
    jobs = [fragment_argv(argv, cfg.expname, f) for f in frags]
    log.info("%d fragments of <= %d frames over [%d, %d) on %s", len(frags), fragment_len, frags[0].start,
             frags[-1].start + frags[-1].n_frames, ", ".join(devices) or cfg.device)
    if len(devices) <= 1:
        lines = [train_one([*job, *(["--device", devices[0]] if devices else [])]) for job in jobs]
    else:
        lines = _train_parallel(jobs, devices)
    ckpts = [str(Path(cfg.basedir) / (cfg.expname + f.suffix) / "ckpt.pt") for f in frags]
    for line in lines:
        log.info("%s", line)
    return (f"trained {len(frags)} fragments of {cfg.expname} (frames {frags[0].start}-"
            f"{frags[-1].start + frags[-1].n_frames - 1}) into {Path(cfg.basedir)}/{cfg.expname}_fNNNNN; stitch: "
            f"python render_one_video.py --ckpt {ckpts[0]} --fragments {' '.join(ckpts[1:]) or ckpts[0]}")


def _train_parallel(jobs: list[list[str]], devices: list[str]) -> list[str]:
    ctx = torch.multiprocessing.get_context("spawn")
    queue = ctx.SimpleQueue()
    torch.multiprocessing.spawn(_worker, args=(jobs, devices, queue), nprocs=len(devices), join=True)
    results = []
    while not queue.empty():
        results.append(queue.get())
    errors = [f"{devices[rank]}: {line}" for rank, ok, line in results if not ok]
    if errors:
        raise UserError(errors[0] + (f" (and {len(errors) - 1} more failed)" if len(errors) > 1 else ""))
    return [line for _, _, line in results]


# ---------------------------------------------------------------------------- stitching
def fragment_order(ckpts: list[str]) -> list[tuple[str, int, int]]:
    """Checkpoints -> [(ckpt, frame_start, n_frames)] sorted by frame_start; checks they form one video."""
    from engine.checkpoint import load_checkpoint

    items, first = [], None
    for ckpt in dict.fromkeys(ckpts):  # de-duplicated, order kept
        state = load_checkpoint(ckpt)
        cams = state["extra"].get("cameras") or {}
        if "frame_start" not in cams:
            raise UserError(f"{ckpt}: checkpoint holds no frame range (written by an older train.py?)")
        first = first or (ckpt, state)
        _check_same_series(ckpt, state, *first)
        items.append((ckpt, int(cams["frame_start"]), int(cams["n_frames"])))
    items.sort(key=lambda x: x[1])
    for (a, sa, na), (b, sb, _) in zip(items, items[1:]):
        if sa + na != sb:
            log.warning("fragments are not contiguous: %s ends at frame %d, %s starts at %d", a, sa + na - 1, b, sb)
    return items


def _check_same_series(ckpt: str, state: dict, ref_ckpt: str, ref: dict) -> None:
    """UserError unless ``state`` is a fragment of the same scene, rig and config as ``ref``."""
    cams, ref_cams = state["extra"]["cameras"], ref["extra"]["cameras"]
    if list(cams["names"]) != list(ref_cams["names"]):
        raise UserError(f"{ckpt}: another camera rig than {ref_ckpt} (cameras {cams['names']})")
    if Path(state["config"]["datadir"]).resolve() != Path(ref["config"]["datadir"]).resolve():
        raise UserError(f"{ckpt}: trained on {state['config']['datadir']} but {ref_ckpt} on "
                        f"{ref['config']['datadir']}; fragments of different scenes cannot be joined")
    if not np.allclose(np.asarray(cams["c2w"]), np.asarray(ref_cams["c2w"]), atol=1e-6):
        raise UserError(f"{ckpt}: its cameras sit at other poses than {ref_ckpt}'s (another scene or world)")
    diff = [k for k in config_differences(ref["config"], state["config"]) if k not in FRAGMENT_KEYS]
    if diff:
        raise UserError(f"{ckpt}: trained with another config than {ref_ckpt} "
                        f"({describe_differences(ref['config'], state['config'], diff)})")


def stitch_videos(videos: list[Path], out: Path) -> None:
    """Join mp4s of one size end to end into ``out`` without re-encoding (ffmpeg concat demuxer)."""
    sizes = {(i.width, i.height) for i in map(probe_video, videos)}
    if len(sizes) != 1:
        raise UserError(f"{out}: fragment videos have different sizes {sorted(sizes)}")
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "videos.txt"
        listing.write_text("".join(f"file '{Path(v).resolve().as_posix()}'\n" for v in videos))
        with atomic_path(out) as part:
            cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "concat", "-safe", "0",
                   "-i", str(listing), "-c", "copy", str(part)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                detail = " ".join(proc.stderr.split())[-200:]  # one line, whatever ffmpeg printed
                raise UserError(f"{out}: ffmpeg could not join the fragment videos ({detail})")


def render_fragments(req, ckpts: list[str]) -> str:
    """Render ``req`` (a workflow.VideoRequest) from each fragment checkpoint, then stitch in frame order.

    Each fragment's video (and PNGs) goes to ``OUT/<fragment run name>/``; the joined video is
    ``OUT/<video name>.mp4`` where OUT is ``req.out_dir`` or ``<basedir>/<expname>_stitched``.
    """
    from engine.workflow import render_video

    if req.frames:
        raise UserError("--frames cannot be combined with --fragments (each fragment renders its own frames)")
    order = fragment_order([req.ckpt, *ckpts])
    first_run = Path(order[0][0]).parent
    base = first_run.name.rsplit("_f", 1)[0]
    out_dir = Path(req.out_dir) if req.out_dir else first_run.parent / f"{base}_stitched"
    refuse_existing([out_dir / Path(ckpt).parent.name for ckpt, _, _ in order], req.overwrite)
    videos = []
    for ckpt, _, _ in order:
        run = Path(ckpt).parent.name
        with atomic_dir(out_dir / run, overwrite=bool(req.overwrite)) as staging:
            log.info("%s", render_video(replace(req, ckpt=ckpt, out_dir=str(staging))))
            (mp4,) = staging.glob("*.mp4")
        videos.append(out_dir / run / mp4.name)
    out = out_dir / videos[0].name
    stitch_videos(videos, out)
    return (f"stitched {len(videos)} fragment videos (frames {order[0][1]}-{order[-1][1] + order[-1][2] - 1}) "
            f"into {out}")

"""Evaluation pictures and the static ``report.html`` of a run (no server, relative links only).

Pictures per test camera (under RUN/test/), labelled panels (:mod:`engine.panels`):
``<cam>_frameNNNN.png`` = render | ground truth | error heat map (mean |error| over RGB, colour bar
0 .. ``ERROR_VMAX``), ``<cam>_depthNNNN.png`` = rendered depth | ground-truth depth (only when the
scene has it) with one colour range and a colour bar in world units, ``<cam>_static.png``,
``<cam>_rgb.mp4`` (the raw test render, for viewing only; embedded in the report).
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataLoader.atomic_io import write_text, write_video
from dataLoader.video_io import to_uint8
from engine.evaluation.visualize import save_png
from engine.panels import depth_panel, frame_panel
from engine.run_info import run_section_html

ERROR_VMAX = 0.25  # mean absolute RGB error mapped to the brightest heat-map colour


def chosen_frames(n_t: int, n_images: int, picture_frames: list[int] | None) -> list[int]:
    """Frames to draw: the given ones (clipped to the video), else n_images evenly spaced."""
    if picture_frames:
        return sorted({min(max(int(t), 0), n_t - 1) for t in picture_frames})
    return np.unique(np.linspace(0, n_t - 1, max(1, n_images)).round().astype(int)).tolist()


@dataclass
class CameraEvaluation:
    """What evaluating one test camera keeps (no float video: frames are scored as they are rendered).

    rgb8: uint8 [T, H, W, 3] render; gt: uint8 [T, H, W, 3]; gt_depth: float32 [T, H, W] world-unit
    camera z or None; pictures: {t: (rgb float32 [H, W, 3], depth float32 [H, W])} for the picture
    frames; static_rgb: float32 [H, W, 3]."""

    rgb8: np.ndarray
    gt: np.ndarray
    gt_depth: np.ndarray | None
    pictures: dict[int, tuple[np.ndarray, np.ndarray]]
    static_rgb: np.ndarray


def save_camera_pictures(out_dir: Path, cam: str, ev: CameraEvaluation) -> dict:
    """PNGs of ev's picture frames, the static render and the test video in out_dir. Returns
    {"frames": [...], "depth": [...], "static": ..., "video": ...} with file names relative to out_dir."""
    files: dict = {"frames": [], "depth": []}
    for t, (rgb, depth) in sorted(ev.pictures.items()):
        save_png(out_dir / f"{cam}_frame{t:04d}.png", frame_panel(rgb, ev.gt[t] / 255.0, ERROR_VMAX))
        save_png(out_dir / f"{cam}_depth{t:04d}.png",
                 depth_panel(depth, ev.gt_depth[t] if ev.gt_depth is not None else None))
        files["frames"].append(f"{cam}_frame{t:04d}.png")
        files["depth"].append(f"{cam}_depth{t:04d}.png")
    save_png(out_dir / f"{cam}_static.png", to_uint8(ev.static_rgb))
    write_video(out_dir / f"{cam}_rgb.mp4", ev.rgb8, fps=30)
    files.update(static=f"{cam}_static.png", video=f"{cam}_rgb.mp4")
    return files


# ------------------------------------------------------------------ HTML
def fmt_metric(record, digits: int = 4) -> str:
    """A number, or "n/a" (with the reason as a tooltip) for a metric that could not run."""
    if isinstance(record, dict):
        if not record.get("available", True):
            return f'<span class="na" title="{html.escape(str(record.get("reason", "")))}">n/a</span>'
        record = record.get("value")
    if record is None:
        return '<span class="na">n/a</span>'
    return f"{float(record):.{digits}f}"


TEST_COLUMNS = [  # (header, getter)
    ("PSNR [dB]", lambda m: m.get("psnr")),
    ("per-frame PSNR [dB]", lambda m: m.get("psnr_per_frame_mean")),
    ("SSIM (range 1)", lambda m: m.get("ssim")),
    ("DSSIM 1-S", lambda m: m.get("dssim1")),
    ("DSSIM (1-S)/2", lambda m: m.get("dssim2")),
    ("SSIM as MixVoxels", lambda m: m.get("ssim_mixvoxels")),
    ("DSSIM as MixVoxels", lambda m: m.get("dssim_mixvoxels")),
    ("LPIPS", lambda m: m.get("optional", {}).get("lpips")),
    ("LPIPS-VGG", lambda m: (m.get("optional", {}).get("lpips") or {}).get("vgg")),
    ("FLIP", lambda m: m.get("optional", {}).get("flip")),
    ("JOD", lambda m: m.get("optional", {}).get("jod")),
    ("depth AbsRel", lambda m: _depth(m.get("depth"), "abs_rel")),
    ("depth RMSE", lambda m: _depth(m.get("depth"), "rmse")),
    ("depth &delta;&lt;1.25", lambda m: _depth(m.get("depth"), "delta_1_25")),
]


def _depth(rec, key):
    """One value of a depth-metrics record; the record itself when it says "unavailable"."""
    if not isinstance(rec, dict):
        return None
    return rec if not rec.get("available", True) else rec.get(key)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(src: str, caption: str) -> str:
    src = html.escape(src)
    return f'<figure><a href="{src}"><img src="{src}" alt="{html.escape(caption)}"></a>' \
           f"<figcaption>{html.escape(caption)}</figcaption></figure>"


def _camera_section(cam: str, m: dict) -> str:
    f = m.get("files", {})
    parts = [f"<h3>{html.escape(cam)}</h3>"]
    has_gt = (m.get("depth") or {}).get("available", True)
    for frame, depth in zip(f.get("frames", []), f.get("depth", [])):
        parts.append("<div>" + _img(frame, f"{Path(frame).stem}: render | ground truth | mean |RGB error| "
                                           f"(0..{ERROR_VMAX})")
                     + _img(depth, f"{Path(depth).stem}: rendered depth"
                                   + (" | ground-truth depth" if has_gt else " (the scene has no ground-truth depth)")
                                   + ", colour bar in world units") + "</div>")
    if f.get("psnr_plot"):
        parts.append(_img(f["psnr_plot"], "per-frame PSNR"))
    if f.get("video"):
        src = html.escape(f["video"])
        parts.append(f'<figure class="video"><video controls loop muted preload="metadata" src="{src}"></video>'
                     f"<figcaption>test video (render)</figcaption></figure>")
    links = [f'<a href="{html.escape(f[k])}">{k}</a>' for k in ("per_frame_csv", "video", "static") if k in f]
    parts.append("<p>" + " &middot; ".join(links) + "</p>")
    unavailable = {n: r.get("reason") for n, r in m.get("optional", {}).items() if not r.get("available", True)}
    if unavailable:
        parts.append("<ul class='na'>" + "".join(f"<li>{html.escape(n)} unavailable ({html.escape(str(r))})</li>"
                                                 for n, r in unavailable.items()) + "</ul>")
    return "\n".join(parts)


CSS = """body{font-family:sans-serif;margin:1.5em;max-width:1200px}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}.na{color:#a00}
figure{display:inline-block;margin:4px;vertical-align:top;width:48%}img{width:100%;image-rendering:pixelated}
figcaption{font-size:80%;color:#444}video{width:100%;image-rendering:pixelated}
.what th{text-align:left}.l{text-align:left;font-family:monospace}pre{font-size:80%;background:#f6f6f6;padding:6px}"""


def report_html(run_dir: Path, metrics: dict) -> str:
    """The report page for ``metrics`` (as written to metrics.json); links are relative to run_dir."""
    test = metrics.get("test", {})
    head = [f"<h1>Run {html.escape(Path(run_dir).resolve().name)}</h1>",
            f"<p>iterations: {metrics.get('iterations', '?')}, training time: "
            f"{fmt_metric(metrics.get('train_time_s'), 0)} s, checkpoint: {html.escape(str(metrics.get('ckpt', '')))}"
            "</p>", run_section_html(metrics)]
    rows = [[html.escape(cam)] + [fmt_metric(get(m)) for _, get in TEST_COLUMNS] for cam, m in test.items()]
    body = ["<h2>Test cameras</h2>", _table(["camera"] + [h for h, _ in TEST_COLUMNS], rows),
            "<p>Metrics on raw float renders; conventions in metrics.json (<code>conventions</code>).</p>"]
    train_depth = metrics.get("train_depth") or {}
    if train_depth:
        rows = [[html.escape(c)] + [fmt_metric(_depth(d, k)) for k in ("abs_rel", "rmse", "delta_1_25")]
                for c, d in train_depth.items()]
        body += ["<h2>Training-camera depth</h2>", _table(["camera", "AbsRel", "RMSE", "&delta;&lt;1.25"], rows)]
    if (Path(run_dir) / "training_curves.png").is_file():
        body += ["<h2>Training curves</h2>", _img("training_curves.png", "loss and PSNR vs iteration and time")]
    body += ["<h2>Per camera</h2>"] + [_camera_section(cam, m) for cam, m in test.items()]
    videos = sorted(p.name for p in (Path(run_dir) / "videos").glob("*.mp4"))
    if videos:
        body += ["<h2>Videos</h2><ul>"] + [f'<li><a href="videos/{html.escape(v)}">{html.escape(v)}</a></li>'
                                           for v in videos] + ["</ul>"]
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>report</title><style>{CSS}</style></head>"
            f"<body>{''.join(head)}{''.join(body)}"
            f"<p><a href='metrics.json'>metrics.json</a></p></body></html>\n")


def write_report(run_dir: Path, metrics: dict) -> Path:
    """Write run_dir/report.html (atomically) and return its path."""
    path = Path(run_dir) / "report.html"
    write_text(path, report_html(run_dir, metrics))
    return path

"""What a run was: the records ``metrics.json`` keeps about it and the report's "What ran" section.

- ``metrics["run"]`` (:func:`run_record`): the resolved config, the depth supervision (source, file,
  loss, weight), the device and the toolkit commit.
- ``metrics["data"]`` (:func:`data_record`): the data directory, frame range and cameras the test
  metrics were computed on (``tools/evaluate.py --datadir OTHER`` records OTHER).
"""
from __future__ import annotations

import html
from pathlib import Path

from dataLoader.scene_layout import SceneDir
from engine.options import upgrade_config


def depth_record(cfg: dict) -> dict:
    """The depth supervision a config asks for: {"source": "none"} or source, file, loss and weights."""
    source = upgrade_config(cfg).get("depth_source", "none")
    if source == "none":
        return {"source": "none"}
    rel = cfg["colmap_depth_path"] if source == "colmap" else cfg["depthmap_npy_path"]
    return {"source": source, "file": str(SceneDir(cfg["datadir"]).resolve(rel)),
            "loss": cfg.get("depth_loss"), "lambda": cfg.get("depth_lambda"),
            "lambda_decay": cfg.get("depth_lambda_decay")}


def device_label(device: str, environment: dict) -> str:
    """"cpu", or "cuda (GPU name)"; ``device`` "auto" is resolved as the run resolved it (a GPU if present)."""
    if device == "auto":
        device = "cuda" if environment.get("gpu") else "cpu"
    return f"{device} ({environment['gpu']})" if device.startswith("cuda") and environment.get("gpu") else device


def run_record(cfg: dict, device: str, environment: dict) -> dict:
    """metrics["run"]: resolved config (JSON-safe values), depth supervision, device, toolkit commit."""
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(cfg.items())}
    return {"config": config, "depth": depth_record(cfg), "device": device_label(device, environment),
            "toolkit_commit": environment.get("toolkit_commit", "unknown")}


def data_record(data) -> dict:
    """metrics["data"] for a VideoDataset: directory, frame range [start, stop), cameras, image size."""
    start = int(data.opts.frame_start)
    return {"datadir": str(Path(data.opts.datadir).resolve()), "frame_start": start, "n_frames": int(data.n_frames),
            "frame_range": f"{start}:{start + int(data.n_frames)}",
            "test_cameras": [data.cam_names[k] for k in data.test_idx],
            "train_cameras": [data.cam_names[k] for k in data.train_idx], "hw": [int(data.h), int(data.w)]}


def _depth_text(rec: dict) -> str:
    if rec.get("source", "none") == "none":
        return "none (colour only)"
    name = {"colmap": "COLMAP sparse keypoints", "static_model": "static-model dense maps",
            "video_mvs": "plane-sweep maps of the videos"}.get(rec["source"], rec["source"])
    return (f"{name} from {rec.get('file')}; loss {rec.get('loss')}, weight {rec.get('lambda')} "
            f"(x{rec.get('lambda_decay')} by the last iteration)")


def run_section_html(metrics: dict) -> str:
    """The report's "What ran" section (empty when metrics.json holds neither record)."""
    run, data = metrics.get("run") or {}, metrics.get("data") or {}
    if not run and not data:
        return ""
    rows = []
    if data:
        rows += [("data directory", data.get("datadir")),
                 ("frames", f"{data.get('frame_range')} ({data.get('n_frames')} frames)"),
                 ("test cameras", ", ".join(data.get("test_cameras", []))),
                 ("training cameras", ", ".join(data.get("train_cameras", [])))]
        trained_on = (run.get("config") or {}).get("datadir")
        if trained_on and Path(trained_on).resolve() != Path(str(data.get("datadir"))):
            rows.append(("trained on", f"{trained_on} (the test metrics are on the data directory above)"))
    if run:
        rows += [("depth supervision", _depth_text(run.get("depth", {}))), ("device", run.get("device")),
                 ("toolkit commit", run.get("toolkit_commit"))]
    table = "".join(f"<tr><th>{html.escape(k)}</th><td class='l'>{html.escape(str(v))}</td></tr>" for k, v in rows)
    parts = ["<h2>What ran</h2>", f"<table class='what'>{table}</table>"]
    config = run.get("config")
    if config:
        lines = "\n".join(f"{k} = {v}" for k, v in config.items())
        parts.append(f"<details><summary>resolved config ({len(config)} keys)</summary>"
                     f"<pre>{html.escape(lines)}</pre></details>")
    return "\n".join(parts)

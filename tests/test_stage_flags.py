"""One set of flags across the stages: --datadir (positional alias where scripts always took one),
--downsample with one meaning, --config reading only a stage's own keys, help texts that work and cite
nothing outside the repository."""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import script_env

import colmap2depth
import imgs2poses
import render_one_video
import static_model2depth
import video2depth
from core.errors import UserError
from engine.stage_args import DOWNSAMPLE_HELP, datadir_of, parse_with_config
from tools import make_synthetic_scene, prepare_video

REPO = Path(__file__).resolve().parents[1]
PARSERS = {"imgs2poses": imgs2poses.build_parser, "colmap2depth": colmap2depth.build_parser,
           "prepare_video": prepare_video.build_parser, "static_model2depth": static_model2depth.build_parser,
           "make_synthetic_scene": make_synthetic_scene.build_parser, "video2depth": video2depth.build_parser}
SCRIPTS = ["train.py", "imgs2poses.py", "colmap2depth.py", "prepare_static.py", "static_model2depth.py",
           "video2depth.py", "render_one_video.py", "tools/prepare_video.py", "tools/evaluate.py",
           "tools/show_metrics.py", "tools/train_fragments.py", "tools/make_synthetic_scene.py",
           "tools/convert_mixvoxels_config.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_works_and_cites_nothing_outside_the_repo(script, monkeypatch, capsys):
    module = importlib.import_module(script.removesuffix(".py").replace("/", "."))
    monkeypatch.setattr(sys, "argv", [script, "--help"])
    with pytest.raises(SystemExit) as exc:
        module.main()
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and "SPEC" not in out and "NOTES" not in out


def test_show_metrics_help_from_the_command_line():
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "show_metrics.py"), "--help"], capture_output=True,
                          text=True, cwd=REPO, env=script_env(), timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("usage:"), proc.stderr


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_scene_stage_takes_datadir(name):
    p = PARSERS[name]()
    extra = ["--ckpt", "static.pt"] if name == "static_model2depth" else []
    args = p.parse_args(["--datadir", "scene", "--data_root", "root", *extra])
    assert datadir_of(args) == str(Path("root") / "scene")


def test_downsample_means_the_same_everywhere():
    for build in (imgs2poses.build_parser, prepare_video.build_parser, static_model2depth.build_parser,
                  video2depth.build_parser, render_one_video.build_parser):
        helps = [a.help for a in build()._actions if "--downsample" in a.option_strings]
        assert all(h.startswith(DOWNSAMPLE_HELP) for h in helps)
    assert [a for a in prepare_video.build_parser()._actions if "--downsample_train" in a.option_strings]


def test_positional_and_flag_datadir(tmp_path):
    p = prepare_video.build_parser()
    assert datadir_of(p.parse_args(["scene"])) == "scene"
    with pytest.raises(UserError, match="disagree"):
        datadir_of(p.parse_args(["a", "--datadir", "b"]))
    with pytest.raises(UserError, match="pass --datadir"):
        datadir_of(p.parse_args([]))


def test_config_gives_a_stage_only_its_own_keys(tmp_path):
    cfg = tmp_path / "scene.txt"
    cfg.write_text("datadir = coffee\ndownsample_train = 2.0\noverwrite = 1\nframe_start = 300\nn_frames = 270\n"
                   "exclude_cams = [cam13]\n")
    a = parse_with_config(prepare_video.build_parser(), ["--config", str(cfg)], ("datadir", "data_root", "downsample"))
    assert (a.datadir, a.downsample, a.overwrite, a.frame_start, a.n_frames) == ("coffee", 2.0, 0, 0, -1)
    b = parse_with_config(colmap2depth.build_parser(), ["--config", str(cfg), "--datadir", "other"],
                          ("datadir", "data_root", "exclude_cams"))
    assert (b.datadir, b.exclude_cams, b.overwrite) == ("other", ["cam13"], 0)  # the command line wins

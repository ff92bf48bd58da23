"""MixVoxels' own config files: the key mapping is pinned, the release's coffee_martini T-schedule file
trains (datadir pointed at the tiny scene), the converter writes the same translation, and the four
schedules give distinct default run names."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_TRAIN, script_env

from engine import mixvoxels_config as mv
from engine import options
from engine.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]

# The keys and values of MixVoxels' configs/schedule5000/coffee_martini_5000.txt (fengres/mixvoxels).
COFFEE_MARTINI_5000 = """\
scene_box = [-3.0, -3.0, -1.5]
time_head = directdyrender
dy_loss = l2
dynamic_pool_kernel_size = 41
dynamic_granularity = point_wise
point_wise_dynamic_threshold = 0.01
use_cosine_lr_scheduler = 1
lr_init = 0.02
lr_basis = 3e-3
lr_dynamic_init = 0.02
lr_dynamic_basis = 3e-3

n_iters = 5000
upsamp_list = [1500,2000,2500,3250]
update_AlphaMask_list = [1750]
featureC = 512
featureD = 512
N_voxel_final = 262144000

dataset_name = llffvideo
datadir = ../data/coffee_martini/
basedir = ./log

downsample_train = 2.0
ndc_ray = 1

batch_size = 512
batch_factor = [8,8,2,1]
data_dim_color = 27
data_dim_density = 27
n_time_embedding = 150
step_ratio = 4

zero_dynamic_sigma = 1
zero_dynamic_sigma_thresh = 0.00001

sigma_static_thresh = 0.1

sigma_diff_method = 'log'
sigma_diff_weight = 0.0
sigma_diff_log_thresh = 0.1

rgb_diff_weight = 0.0
rgb_diff_log_thresh = 0.2

loss_weight_static = 1
dynamic_reg_weight = 0.1
temporal_variance_threshold = 0.03
dynamic_threshold = 0.9
rm_weight_mask_thre = 0.0001
rm_weight_mask_thre_static = 0.00001
n_train_frames = 300
n_frames = 300
alpha_mask_thre = 0.00001

N_voxel_init =  16777216 # 256**3

N_vis = -1 # vis all testing images
vis_every = 10000

render_test = 1
render_path = 1

n_lamb_sigma = [16,4,4]
n_lamb_sh = [48,12,12]

shadingMode = MLP_Fea
fea2denseAct = relu

view_pe = 0
fea_pe = 0

TV_weight_density = 1.0
TV_weight_app = 1.0
TV_dynamic_factor = 3.0
"""

UNUSED = ("time_head", "dy_loss", "dataset_name", "n_time_embedding", "zero_dynamic_sigma",
          "zero_dynamic_sigma_thresh", "sigma_static_thresh", "sigma_diff_method", "sigma_diff_weight",
          "sigma_diff_log_thresh", "rgb_diff_weight", "rgb_diff_log_thresh", "loss_weight_static",
          "dynamic_reg_weight", "rm_weight_mask_thre_static", "N_vis", "render_path", "shadingMode",
          "view_pe", "fea_pe")


@pytest.fixture
def coffee_5000(tmp_path) -> Path:
    path = tmp_path / "schedule5000" / "coffee_martini_5000.txt"
    path.parent.mkdir()
    path.write_text(COFFEE_MARTINI_5000)
    return path


def test_key_mapping_is_pinned(coffee_5000):
    tr = mv.translate(mv.read_key_values(coffee_5000), "f")
    assert tr.unused == UNUSED
    assert tr.values["batch_size"] == "4096"  # 512 x batch_factor[0]: the rays per iteration it trains with
    assert tr.values["lr_decay"] == "cosine"
    assert "n_train_frames" not in tr.values and "batch_factor" not in tr.values
    cfg = options.parse(["--config", str(coffee_5000)])
    assert (cfg.n_iters, cfg.batch_size, cfg.N_voxel_init, cfg.N_voxel_final) == (5000, 4096, 256 ** 3, 640 ** 3)
    assert (cfg.upsamp_list, cfg.update_AlphaMask_list) == ([1500, 2000, 2500, 3250], [1750])
    assert (cfg.lr_init, cfg.lr_basis, cfg.lr_dynamic_init, cfg.lr_dynamic_basis) == (0.02, 3e-3, 0.02, 3e-3)
    assert (cfg.n_lamb_sigma, cfg.n_lamb_sh, cfg.featureC, cfg.featureD) == ([16, 4, 4], [48, 12, 12], 512, 512)
    assert (cfg.downsample_train, cfg.ndc_ray, cfg.scene_box, cfg.n_frames) == (2.0, 1, [-3.0, -3.0, -1.5], 300)
    assert (cfg.temporal_variance_threshold, cfg.dynamic_threshold, cfg.dynamic_pool_kernel_size) == (0.03, 0.9, 41)
    assert (cfg.point_wise_dynamic_threshold, cfg.alpha_mask_thre, cfg.rm_weight_mask_thre) == (0.01, 1e-5, 1e-4)
    assert (cfg.step_ratio, cfg.fea2denseAct, cfg.TV_dynamic_factor) == (4.0, "relu", 3.0)
    assert cfg.vis_every == 10000  # periodic test renders, as in the release
    assert cfg.config == str(coffee_5000) and options.resolve(cfg).expname == "coffee_martini_5000"


def test_unused_keys_are_named_in_one_warning_line(coffee_5000, caplog):
    with caplog.at_level(logging.WARNING):
        options.parse(["--config", str(coffee_5000)])
    lines = [r.getMessage() for r in caplog.records if "MixVoxels keys" in r.getMessage()]
    assert lines == [f"{coffee_5000}: MixVoxels keys without an effect here (ignored): {', '.join(UNUSED)}"]


def test_n_train_frames_below_n_frames_is_refused(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("dataset_name = llffvideo\nn_frames = 300\nn_train_frames = 50\n")
    with pytest.raises(mv.UserError, match="n_train_frames 50 differs from n_frames 300"):
        options.parse(["--config", str(path)])


def test_release_config_trains_ten_iterations(coffee_5000, tiny_scene, tmp_path):
    """The release file as the config; on the command line only what a tiny CPU scene needs: its datadir,
    its 4 frames, 10 iterations and the tiny model sizes (the full 256^3 model takes ~40 s per iteration on
    2 shared CPU cores)."""
    cfg = options.resolve(options.parse(["--config", str(coffee_5000), "--datadir", str(tiny_scene), "--n_frames", "4",
                                 "--downsample", "1", "--n_iters", "10", "--basedir", str(tmp_path / "log"),
                                 *TINY_TRAIN]))
    trainer = Trainer(cfg)
    trainer.fit()
    assert trainer.step == 10 and (tmp_path / "log" / "coffee_martini_5000" / "ckpt.pt").is_file()
    mc = trainer.model.cfg
    assert (mc.dynamic_pool_kernel_size, mc.dynamic_threshold, mc.point_wise_dynamic_threshold) == (41, 0.9, 0.01)
    assert (cfg.lr_init, cfg.lr_decay, cfg.temporal_variance_threshold) == (0.02, "cosine", 0.03)


def test_converter_writes_the_translation(coffee_5000, tmp_path):
    out = tmp_path / "ours.txt"
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "convert_mixvoxels_config.py"), str(coffee_5000),
                           str(out)], capture_output=True, text=True, cwd=REPO, env=script_env())
    assert proc.returncode == 0, proc.stderr
    assert f"ignored (no effect here): {', '.join(UNUSED)}" in out.read_text()
    a = vars(options.parse(["--config", str(out)]))
    b = vars(options.parse(["--config", str(coffee_5000)]))
    assert {k: (a[k], b[k]) for k in a if k != "config" and a[k] != b[k]} == {}


def test_schedules_have_distinct_run_names():
    names = set()
    for s, iters in (("T", 5000), ("S", 7500), ("M", 12500), ("L", 25000)):
        cfg = options.resolve(options.parse(["--base_config", str(REPO / "configs" / "base" / f"{s}.txt"),
                                     "--config", str(REPO / "configs" / "scenes" / "coffee_martini.txt")]))
        assert cfg.n_iters == iters and cfg.expname == f"coffee_martini_{s}"
        names.add(cfg.expname)
    assert len(names) == 4

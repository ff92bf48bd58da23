"""Trainer: the optimizer-rebuild rule, a short run that learns, checkpoints and the config layer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import UserError
from engine import options
from engine.checkpoint import load_checkpoint, load_model
from engine.train.schedule import GridSchedule, lr_factor, n_to_reso
from engine.train.trainer import Trainer
from models import losses

UPSAMPLE_AT, ALPHA_AT = (8, 16), (12, 20)
N_ITERS = 30


def optimizer_param_ids(trainer: Trainer) -> list[int]:
    return [id(p) for g in trainer.optimizer.param_groups for p in g["params"]]


def assert_optimizer_holds_live_params(trainer: Trainer) -> None:
    ids = optimizer_param_ids(trainer)
    assert len(ids) == len(set(ids)), "a parameter appears twice in the optimizer"
    live = {id(p) for p in trainer.model.parameters() if p.requires_grad}
    assert set(ids) == live


def eval_batch(trainer: Trainer):
    return trainer.data.gather(np.arange(0, trainer.data.n_train_rays, 3))


@torch.no_grad()
def static_mse(trainer: Trainer, batch) -> float:
    out = trainer.model(batch, jitter=False)
    return float(losses.mse(out.static_rgb, batch.rgb.mean(1)))


@pytest.fixture(scope="module")
def trained(make_cfg):
    """One short training run (upsamples at 8 and 16, alpha mask + shrink at 12, mask again at 20)."""
    trainer = Trainer(make_cfg("fit", n_iters=N_ITERS, upsamp_list=UPSAMPLE_AT, alpha_mask_list=ALPHA_AT))
    batch = eval_batch(trainer)
    mse_before = static_mse(trainer, batch)
    ckpt = trainer.fit()
    return {"trainer": trainer, "ckpt": ckpt, "batch": batch, "mse_before": mse_before,
            "mse_after": static_mse(trainer, batch)}


# ---------------------------------------------------------------------- optimizer rebuild rule
def test_optimizer_is_rebuilt_after_shrink_and_upsample(make_cfg):
    cfg = make_cfg("rebuild", n_iters=N_ITERS, upsamp_list=UPSAMPLE_AT, alpha_mask_list=ALPHA_AT)
    trainer = Trainer(cfg)
    assert_optimizer_holds_live_params(trainer)
    for step, what in ((ALPHA_AT[0], "shrink"), (UPSAMPLE_AT[0], "upsample")):
        old_params = {id(p) for p in trainer.model.parameters()}
        old_res = trainer.model.resolution
        trainer.step = step
        trainer.after_step()
        assert trainer.model.alpha_mask is not None
        new_grids = [p for f in trainer.model.fields() for p in f.grid_parameters()]
        assert not {id(p) for p in new_grids} & old_params, f"{what} did not replace the grids"
        if what == "upsample":
            assert np.prod(trainer.model.resolution) > np.prod(old_res)
        assert_optimizer_holds_live_params(trainer)
        # the schedule position is kept
        f = lr_factor(step, cfg.n_iters, cfg.lr_decay, cfg.lr_decay_target_ratio)
        lrs = {g["name"]: g["lr"] for g in trainer.optimizer.param_groups}
        assert lrs["static_grids"] == pytest.approx(cfg.lr_init * f)
        assert lrs["dynamic_nets"] == pytest.approx(cfg.lr_dynamic_basis * f)
    # the replaced grids train: one step changes every static grid parameter
    before = [p.detach().clone() for p in trainer.model.density.grid_parameters()]
    trainer.train_step()
    after = trainer.model.density.grid_parameters()
    assert all(not torch.equal(a, b) for a, b in zip(before, after))


def test_alpha_mask_update_without_shrink_keeps_the_optimizer(make_cfg):
    trainer = Trainer(make_cfg("no_rebuild", n_iters=N_ITERS, upsamp_list=UPSAMPLE_AT, alpha_mask_list=ALPHA_AT))
    optimizer = trainer.optimizer
    trainer.step = ALPHA_AT[1]  # a later mask update does not shrink, so no parameter is replaced
    trainer.after_step()
    assert trainer.model.alpha_mask is not None and trainer.optimizer is optimizer
    assert_optimizer_holds_live_params(trainer)


# ---------------------------------------------------------------------- schedules
def test_grid_schedule_by_hand():
    sched = GridSchedule(1000, 8000, (10, 20, 30), (15, 25))
    assert sched.voxel_counts() == [2000, 4000, 8000]  # log-linear
    assert [sched.upsample_count(s) for s in (9, 10, 20, 30, 31)] == [None, 2000, 4000, 8000, None]
    assert sched.alpha_mask_update(15) == (True, True)  # the first update shrinks
    assert sched.alpha_mask_update(25) == (True, False)
    assert sched.alpha_mask_update(16) == (False, False)


def test_n_to_reso_by_hand():
    assert n_to_reso(1000, torch.tensor([[-1.0, -1, -1], [1, 1, 1]])) == [10, 10, 10]
    assert n_to_reso(2000, torch.tensor([[0.0, 0, 0], [2, 1, 1]])) == [20, 10, 10]


def test_lr_factor_by_hand():
    assert lr_factor(0, 100, "cosine") == 1.0
    assert lr_factor(50, 100, "cosine") == pytest.approx(np.cos(np.pi / 4))
    assert lr_factor(100, 100, "cosine") == 1e-3  # floored, never 0
    assert lr_factor(50, 100, "exp", 0.01) == pytest.approx(0.1)
    assert lr_factor(200, 100, "exp", 0.01) == pytest.approx(0.01)


# ---------------------------------------------------------------------- a short run
def test_short_training_run_decreases_the_loss(trained):
    trainer = trained["trainer"]
    assert trainer.step == N_ITERS
    assert trained["mse_after"] < 0.5 * trained["mse_before"]
    assert_optimizer_holds_live_params(trainer)
    assert (trainer.run_dir / "config.txt").is_file() and trained["ckpt"].is_file()
    assert np.prod(trainer.model.resolution) == pytest.approx(48 ** 3, rel=0.1)  # N_voxel_final reached


# ---------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_without_config(trained):
    trainer = trained["trainer"]
    model, norm, state = load_model(trained["ckpt"])
    ref = trainer.model.eval()
    assert norm == trainer.norm
    assert model.resolution == ref.resolution and model.cfg == ref.cfg
    torch.testing.assert_close(model.aabb, ref.aabb, rtol=0, atol=0)
    assert ref.alpha_mask is not None and model.alpha_mask is not None
    assert torch.equal(model.alpha_mask.grid, ref.alpha_mask.grid)
    assert torch.equal(model.alpha_mask.aabb, ref.alpha_mask.aabb)
    for (k, a), (k2, b) in zip(ref.state_dict().items(), model.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    batch = trained["batch"]
    with torch.no_grad():
        out_ref, out = ref(batch), model(batch)
    for name in ("rgb", "depth", "static_rgb", "static_depth", "acc", "dynamic_mask", "ray_logit", "weights"):
        assert torch.equal(getattr(out, name), getattr(out_ref, name)), name
    assert state["step"] == N_ITERS


def test_truncated_or_foreign_checkpoint_is_a_user_error(trained, tmp_path):
    data = trained["ckpt"].read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="cut.pt: checkpoint is truncated or corrupt"):
        load_model(cut)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(UserError, match="foreign.pt: not a checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(UserError, match="missing.pt: checkpoint not found"):
        load_model(tmp_path / "missing.pt")


# ---------------------------------------------------------------------- config layer
def test_unknown_key_in_config_file_is_an_error(tmp_path):
    cfg = tmp_path / "scene.txt"
    cfg.write_text("datadir = somewhere\nbogus_key = 3\n")
    with pytest.raises(UserError, match="bogus_key"):
        options.parse(["--config", str(cfg)])


def test_unknown_key_on_the_command_line_is_an_error():
    with pytest.raises(UserError, match="--not_a_flag"):
        options.parse(["--datadir", "x", "--not_a_flag", "1"])


def test_missing_datadir_is_an_error():
    with pytest.raises(UserError, match="datadir"):
        options.resolve(options.parse([]))


@pytest.mark.parametrize("order", ["base_first", "config_first"])
def test_config_precedence_base_then_config_then_cli(tmp_path, order):
    base, scene = tmp_path / "base.txt", tmp_path / "scene.txt"
    base.write_text("n_iters = 100\nbatch_size = 64\nfeatureC = 8\nupsamp_list = [1, 2]\n")
    scene.write_text("datadir = data/x\nn_iters = 200\nbatch_size = 128\n")
    files = ["--base_config", str(base), "--config", str(scene)]
    if order == "config_first":
        files = files[2:] + files[:2]
    cfg = options.parse([*files, "--batch_size", "512"])
    assert cfg.featureC == 8 and cfg.upsamp_list == [1, 2]  # base only
    assert cfg.n_iters == 200  # config beats base
    assert cfg.batch_size == 512  # CLI beats both
    assert cfg.lr_init == 0.02  # untouched default
    assert options.resolve(cfg).expname == "scene"


def test_saved_config_reparses_to_the_same_values(tmp_path):
    cfg = options.resolve(options.parse(["--datadir", str(tmp_path / "my scene"), "--expname", "run a",
                                 "--upsamp_list", "--test_cams", "0", "2", "--scene_box", "-1", "-2", "-1.5",
                                 "--lr_init", "0.0123456789", "--static_only", "1"]))
    path = tmp_path / "config.txt"
    options.save_config(cfg, path)
    again = options.resolve(options.parse(["--config", str(path)]))
    a, b = vars(cfg), vars(again)
    assert a.keys() == b.keys()
    assert {k: (a[k], b[k]) for k in a if k not in ("config", "base_config") and a[k] != b[k]} == {}
    assert b["upsamp_list"] == [] and b["test_cams"] == [0, 2] and b["lr_init"] == 0.0123456789

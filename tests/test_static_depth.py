"""Static-model depth distillation: prepare_static, static training, static_model2depth, dense depth loss."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import tiny_config

import prepare_static
import static_model2depth
from core.errors import UserError
from dataLoader.dataset import DataOptions, VideoDataset
from dataLoader.depth_files import DenseDepth, load_dense_depth, save_dense_depth
from dataLoader.poses import SceneNormalization, load_poses_bounds, save_poses_bounds
from dataLoader.scene_layout import SceneDir
from engine import options
from engine.checkpoint import save_checkpoint
from engine.cli import run_main
from engine.render.static_depth import load_static_model, render_static_depth, weight_quantile
from engine.train.trainer import Trainer
from models import build_model
from models.mixvoxels import ModelConfig
from synthetic.scene import make_scene, render_view, write_scene

REPO = Path(__file__).resolve().parents[1]
# A small scene whose static capture a static model fits to ~2 % median depth error in ~30 s (2 cores).
FIT_SCENE = dict(n_cams=4, n_frames=2, width=64, height=48, n_static_views=16, supersample=2, video=False)
FIT_TRAIN = ["--device", "cpu", "--seed", "0", "--batch_size", "1024", "--static_only", "1", "--test_cams",
             "--N_voxel_init", str(32 ** 3), "--N_voxel_final", str(64 ** 3), "--n_iters", "300",
             "--upsamp_list", "45", "90", "135", "--update_AlphaMask_list", "120", "--lr_init", "0.04",
             "--n_lamb_sigma", "16", "4", "4", "--n_lamb_sh", "16", "8", "8", "--static_featureC", "64",
             "--render_test", "0", "--save_every", "100000", "--scene_box", "-1.5", "-1.5", "-1"]


def run_cli(main, argv, capsys) -> tuple[int, list[str], list[str]]:
    """Run a stage's main like the shell does -> (exit code, stdout lines, stderr lines)."""
    code = 0
    try:
        run_main(lambda: main(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, [ln for ln in out.splitlines() if ln.strip()], [ln for ln in err.splitlines() if ln.strip()]


def assert_one_error_line(code, err, *fragments):
    assert code == 2
    errors = [ln for ln in err if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0] == err[-1], err
    assert "Traceback" not in "\n".join(err)
    for frag in fragments:
        assert frag in errors[0], errors[0]


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def fit_scene(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fit") / "scene"
    write_scene(root, **FIT_SCENE)
    return root


@pytest.fixture(scope="module")
def static_ckpt(fit_scene, tmp_path_factory) -> Path:
    """prepare_static + train.py --static_only 1 on the fit scene's static capture."""
    prepare_static.main(["--static_data_path", str(fit_scene / "static")])
    cfg = options.resolve(options.parse(["--datadir", str(fit_scene / "static"), "--expname", "static",
                                 "--basedir", str(tmp_path_factory.mktemp("runs")), *FIT_TRAIN]))
    trainer = Trainer(cfg)
    assert trainer.model.cfg.static_only and not hasattr(trainer.model, "dyn_density")
    assert trainer.data.n_frames == 1 and trainer.data.test_idx == []
    return trainer.fit()


@pytest.fixture
def static_copy(tiny_scene, tmp_path) -> Path:
    dst = tmp_path / "static"
    shutil.copytree(tiny_scene / "static", dst, ignore=shutil.ignore_patterns("cache"))
    return dst


def exact_static_depth(scene: Path, c2w_world: np.ndarray, hw) -> np.ndarray:
    """Ground-truth depth of the static world (moving objects removed) at world cameras [K, 3, 4]."""
    rig = load_poses_bounds(SceneDir(scene).poses)
    world = make_scene(0, FIT_SCENE["n_frames"]).without_moving()
    hwf = (hw[0], hw[1], rig.hwf[2] * hw[1] / rig.hwf[1])
    return np.stack([render_view(world, c, hwf, 0, supersample=1)[1] for c in c2w_world])


# ---------------------------------------------------------------------- prepare_static
def test_prepare_static_writes_only_a_t1_cache_inside_the_capture(static_copy, capsys):
    before = {p for p in static_copy.parent.rglob("*")}
    code, out, _ = run_cli(prepare_static.main, ["--static_data_path", str(static_copy)], capsys)
    assert code == 0 and len(out) == 1 and "4 views 32x24" in out[0]
    new = {p for p in static_copy.parent.rglob("*")} - before
    assert new and all(SceneDir(static_copy).cache in p.parents or p == SceneDir(static_copy).cache for p in new)
    frames = np.load(next(SceneDir(static_copy).cache.glob("*/frames.npy")))
    assert frames.shape == (4, 24, 32, 1, 3)  # one frame per camera, no copies
    VideoDataset(DataOptions(static_copy, test_cams=()))  # what train.py --datadir D opens ...
    assert len(list(SceneDir(static_copy).cache.iterdir())) == 1  # ... is the cache prepare_static built


def test_prepare_static_allows_gaps_and_any_file_name(static_copy, capsys):
    frames = SceneDir(static_copy).frames
    (frames / "cam03").rename(frames / "cam07")
    (frames / "cam07" / "0000.png").rename(frames / "cam07" / "photo.jpg.png")
    names = SceneDir(static_copy).camera_names
    names.write_text(names.read_text().replace("cam03", "cam07"))
    code, out, _ = run_cli(prepare_static.main, ["--static_data_path", str(static_copy)], capsys)
    assert code == 0 and "4 views" in out[0]


def _keep_cams(d: Path, keep: list[int]) -> None:
    rig = load_poses_bounds(SceneDir(d).poses)
    for cam in sorted(SceneDir(d).frames.iterdir()):
        if int(cam.name[3:]) not in keep:
            shutil.rmtree(cam)
    save_poses_bounds(SceneDir(d).poses, rig.c2w[keep], rig.hwf, rig.bounds[keep], [rig.names[k] for k in keep])


def _bad_one_image(d: Path):
    _keep_cams(d, [0])
    return ("1 view", "at least 2 views")


def _bad_sizes(d: Path):
    img = iio.imread(SceneDir(d).frames / "cam02" / "0000.png")
    iio.imwrite(SceneDir(d).frames / "cam02" / "0000.png", img[:20, :30])
    return ("cam02/0000.png", "30x20", "one size")


def _bad_two_images(d: Path):
    shutil.copy(SceneDir(d).frames / "cam01" / "0000.png", SceneDir(d).frames / "cam01" / "0001.png")
    return ("cam01", "2 images", "one photo per camera")


def _bad_rows(d: Path):
    rig = load_poses_bounds(SceneDir(d).poses)
    save_poses_bounds(SceneDir(d).poses, rig.c2w[:3], rig.hwf, rig.bounds[:3])
    SceneDir(d).camera_names.unlink()
    return ("poses_bounds.npy", "3 pose rows but 4 camera folders")


@pytest.mark.parametrize("breaker", [_bad_one_image, _bad_sizes, _bad_two_images, _bad_rows])
def test_bad_static_capture_is_one_line_and_exit_2(static_copy, capsys, breaker):
    fragments = breaker(static_copy)
    code, _, err = run_cli(prepare_static.main, ["--static_data_path", str(static_copy)], capsys)
    assert_one_error_line(code, err, *fragments)
    assert not SceneDir(static_copy).cache.exists()


# ---------------------------------------------------------------------- static model -> depth maps
def test_static_model_depth_matches_ground_truth(static_ckpt, fit_scene):
    """Median relative error of the rendered depth at the video cameras < 5 % (static world GT)."""
    model, norm, _ = load_static_model(static_ckpt)
    rig = load_poses_bounds(SceneDir(fit_scene).poses)
    h, w = FIT_SCENE["height"], FIT_SCENE["width"]
    gt = exact_static_depth(fit_scene, rig.c2w, (h, w))
    rel = []
    for k, c2w in enumerate(norm.apply(rig.c2w)):
        z, acc, _ = render_static_depth(model, c2w, h, w, rig.hwf[2] * w / rig.hwf[1], norm, "cpu")
        rel.append(np.abs(z - gt[k]) / gt[k])
    assert float(np.median(np.stack(rel))) < 0.05


def test_weight_quantile_by_hand():
    t = torch.tensor([[0.1, 0.3, 0.5, 0.7]])
    dt = torch.full_like(t, 0.2)
    w = torch.tensor([[0.0, 0.4, 0.4, 0.0]])  # opacity 0.8: quantiles of the normalized weights
    assert weight_quantile(w, t, dt, 0.5).item() == pytest.approx(0.4)  # between the two samples' cells
    assert weight_quantile(w, t, dt, 0.25).item() == pytest.approx(0.3)  # middle of sample 1's cell
    assert weight_quantile(w, t, dt, 0.75).item() == pytest.approx(0.5)


def test_static_model2depth_writes_round_trip_file_and_never_overwrites(static_ckpt, fit_scene, tmp_path, capsys):
    out = tmp_path / "all_depth.npz"
    argv = ["--ckpt", str(static_ckpt), "--datadir", str(fit_scene), "--depthmap_npy_path", str(out),
            "--device", "cpu"]
    code, lines, err = run_cli(static_model2depth.main, argv, capsys)
    assert code == 0 and len(lines) == 1 and "3 cameras (cam01, cam02, cam03)" in lines[0], (lines, err)
    d = load_dense_depth(out)
    rig = load_poses_bounds(SceneDir(fit_scene).poses)
    assert d.cam_names == ["cam01", "cam02", "cam03"] and d.hw == (48, 64)
    assert d.depth.shape == d.mask.shape == d.weight.shape == (3, 48, 64) and d.depth.dtype == np.float32
    np.testing.assert_allclose(d.c2w, rig.c2w[1:])
    _, norm, _ = load_static_model(static_ckpt)
    assert SceneNormalization.from_dict(d.normalization) == norm
    gt = exact_static_depth(fit_scene, rig.c2w[1:], (48, 64))
    assert np.median(np.abs(d.depth - gt)[d.mask] / gt[d.mask]) < 0.05  # world-unit camera z
    assert np.all(d.weight[~d.mask] == 0) and np.all((d.weight >= 0) & (d.weight <= 1))
    stamp = out.read_bytes()
    code, _, err = run_cli(static_model2depth.main, argv, capsys)
    assert_one_error_line(code, err, str(out), "--overwrite 1")
    assert out.read_bytes() == stamp
    code, _, _ = run_cli(static_model2depth.main, [*argv, "--overwrite", "1", "--cam_num_list", "2"], capsys)
    assert code == 0 and load_dense_depth(out).cam_names == ["cam02"]


def test_dense_depth_file_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    d = DenseDepth(rng.uniform(1, 9, (2, 3, 4)).astype(np.float32), rng.uniform(size=(2, 3, 4)) > 0.3,
                   rng.uniform(size=(2, 3, 4)).astype(np.float32), ["cam01", "cam05"], (3, 4),
                   rng.normal(size=(2, 3, 4)), {"scale": 0.5, "ndc": True})
    save_dense_depth(SceneDir(tmp_path).dense_depth, d)
    back = load_dense_depth(SceneDir(tmp_path).dense_depth)
    for f in ("depth", "mask", "weight", "c2w"):
        np.testing.assert_array_equal(getattr(back, f), getattr(d, f))
    assert (back.cam_names, back.hw, back.normalization) == (d.cam_names, d.hw, d.normalization)
    assert [p.name for p in (tmp_path / "depth").iterdir()] == ["all_depth.npz"]  # no temp file left


def _moved_rig(src: Path, dst: Path, how: str) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("cache", "static", "depth"))
    rig = load_poses_bounds(SceneDir(dst).poses)
    c2w = rig.c2w.copy()
    if how == "shifted":  # e.g. poses from another SfM run: another origin and scale
        c2w[:, :, 3] = c2w[:, :, 3] * 10 + np.array([40.0, 0.0, 25.0])
    else:  # turned 90 degrees about the vertical axis
        rot = np.array([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]])
        c2w = np.einsum("ij,kjl->kil", rot, c2w)
    save_poses_bounds(SceneDir(dst).poses, c2w, rig.hwf, rig.bounds, rig.names)
    return dst


@pytest.mark.parametrize("how, fragment", [("shifted", "outside the static cameras' region"),
                                           ("turned", "deg away from the static cameras'")])
def test_rig_from_another_world_is_refused(static_ckpt, fit_scene, tmp_path, capsys, how, fragment):
    scene = _moved_rig(fit_scene, tmp_path / "scene", how)
    code, _, err = run_cli(static_model2depth.main, ["--ckpt", str(static_ckpt), "--datadir", str(scene)], capsys)
    assert_one_error_line(code, err, "camera cam0", fragment, "not in the static model's world")
    assert not (scene / "depth").exists()


def test_checkpoint_that_is_not_static_is_refused(tiny_scene, tmp_path):
    cfg = ModelConfig(n_frames=2, n_lamb_sigma=(2, 2, 2), n_lamb_sh=(2, 2, 2), n_lamb_sigma_dynamic=(2, 2, 2),
                      n_lamb_sh_dynamic=(2, 2, 2), n_lamb_variation=(2, 2, 2), app_dim=4, data_dim_density=4,
                      data_dim_color=4, static_featureC=4, featureC=4, featureD=4)
    aabb = torch.tensor([[-1.5, -1.5, -1.0], [1.5, 1.5, 1.0]])
    model = build_model("mixvoxels", cfg, aabb, [8, 8, 8])
    from dataLoader.dataset import DataOptions, VideoDataset

    data = VideoDataset(DataOptions(datadir=tiny_scene))
    ckpt = tmp_path / "dynamic.pt"
    save_checkpoint(ckpt, model, data.normalization, {}, 0, extra={"cameras": data.camera_table()})
    proc = subprocess.run([sys.executable, str(REPO / "static_model2depth.py"), "--ckpt", str(ckpt), "--datadir",
                           str(tiny_scene), "--depthmap_npy_path", str(tmp_path / "d.npz")], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and lines == [f"error: {ckpt}: not a static model (trained with static_only 0); "
                                              f"train one on the static capture with train.py --datadir STATIC "
                                              f"--static_only 1"]
    assert not (tmp_path / "d.npz").exists()


# ---------------------------------------------------------------------- dense depth loss in training
def gt_depth_file(scene: Path, path: Path, cams=(1, 2, 3), hw=None, shift=0.0) -> Path:
    """all_depth.npz from gt_depth frame 0 (static pixels only), optionally resized or at moved poses."""
    rig = load_poses_bounds(SceneDir(scene).poses)
    depth = np.stack([np.load(SceneDir(scene).gt_depth_dir / f"cam{k:02d}.npy") for k in cams])
    static = np.ptp(depth, axis=1) < 1e-5
    z = depth[:, 0]
    if hw is not None:
        z, static = z[:, :hw[0], :hw[1]], static[:, :hw[0], :hw[1]]
    c2w = rig.c2w[list(cams)].copy()
    c2w[:, 0, 3] += shift
    save_dense_depth(path, DenseDepth(z, static, static.astype(np.float32), [f"cam{k:02d}" for k in cams],
                                      z.shape[1:], c2w, {}))
    return path


def depth_cfg(tiny_scene, tmp_path, depth_file, lam=1.0, loss="mse", n_iters=20):
    return tiny_config(tiny_scene, tmp_path, f"depth_{loss}", n_iters=n_iters, upsamp_list=(),
                       alpha_mask_list=(), extra=["--depth_source", "static_model", "--depthmap_npy_path",
                                                  str(depth_file), "--depth_lambda", str(lam), "--depth_loss", loss])


@pytest.mark.parametrize("loss", ["mse", "ds_kl"])
def test_depth_term_in_the_trainer_reaches_every_static_grid(tiny_scene, tmp_path, loss):
    trainer = Trainer(depth_cfg(tiny_scene, tmp_path, gt_depth_file(tiny_scene, tmp_path / "d.npz"), loss=loss))
    batch = trainer.data.gather(trainer.sampler.next())  # colours with their dense depth targets
    label = batch.std > trainer.cfg.temporal_variance_threshold
    assert (batch.depth_weight * (~label).float()).sum() > 0
    out = trainer.model(batch, jitter=True, ray_dynamic=label)
    terms = trainer.model.loss_terms(batch, out, label, trainer.weights, trainer.step_scales())
    depth_term = terms["depth"]
    trainer.optimizer.zero_grad(set_to_none=True)
    depth_term.backward(retain_graph=True)
    m = trainer.model
    for p in m.density.grid_parameters():  # depth depends on density only
        assert p.grad is not None and p.grad.abs().sum() > 0
    for p in m.dyn_density.grid_parameters() + m.dyn_appearance.grid_parameters():
        assert p.grad is None or p.grad.abs().sum() == 0  # the static branch only
    total = sum(terms.values())  # one backward, as in train_step
    trainer.optimizer.zero_grad(set_to_none=True)
    total.backward()
    for p in m.density.grid_parameters() + m.appearance.grid_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


@torch.no_grad()
def depth_error(trainer, batch) -> float:
    out = trainer.model(batch)
    w = batch.depth_weight > 0
    return float((out.static_depth[w] - batch.depth[w]).abs().mean())


def test_depth_loss_moves_static_depth_toward_the_target(tiny_scene, tmp_path):
    depth_file = gt_depth_file(tiny_scene, tmp_path / "d.npz")
    runs = {}
    for lam in (0.0, 1.0):
        trainer = Trainer(depth_cfg(tiny_scene, tmp_path / str(lam), depth_file, lam=lam, n_iters=30))
        idx = np.arange(0, trainer.data.n_train_rays, 2)
        batch = trainer.data.gather(idx)
        before = depth_error(trainer, batch)
        for _ in range(30):
            trainer.train_step()
            trainer.step += 1
        runs[lam] = (before, depth_error(trainer, batch))
    assert runs[1.0][0] == pytest.approx(runs[0.0][0])  # same seed, same start
    assert runs[1.0][1] < 0.6 * runs[1.0][0] and runs[1.0][1] < 0.7 * runs[0.0][1]


@pytest.mark.parametrize("kw, fragment", [
    (dict(cams=(1, 2)), "no depth for training cameras ['cam03']"),
    (dict(hw=(20, 32)), "depth maps are 32x20 but training images are 32x24"),
    (dict(shift=0.5), "sit at other poses than the scene's"),
])
def test_depth_file_for_other_cameras_size_or_world_is_refused(tiny_scene, tmp_path, kw, fragment):
    depth_file = gt_depth_file(tiny_scene, tmp_path / "d.npz", **kw)
    with pytest.raises(UserError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        Trainer(depth_cfg(tiny_scene, tmp_path, depth_file))


def test_depth_overlay_config_sets_the_depth_keys(tmp_path):
    scene = tmp_path / "scene.txt"
    scene.write_text("datadir = x\ndepth_lambda = 0.5\n")
    cfg = options.parse(["--config", str(scene), "--depth_config", str(REPO / "configs/depth/static_model.txt")])
    assert cfg.depth_source == "static_model" and cfg.depth_lambda == 0.5  # --config wins
    cfg = options.parse(["--config", str(scene), "--depth_config", str(REPO / "configs/depth/colmap.txt")])
    assert cfg.depth_source == "colmap"


@pytest.mark.parametrize("legacy, source", [(["--use_depth", "1"], "static_model"),
                                            (["--use_depth", "1", "--use_colmap_depth", "1"], "colmap"),
                                            (["--use_depth", "0", "--use_colmap_depth", "1"], "none")])
def test_seed_workflow_depth_keys_become_depth_source_with_a_warning(legacy, source, caplog):
    with caplog.at_level("WARNING"):
        cfg = options.resolve(options.parse(["--datadir", "x", *legacy]))
    assert cfg.depth_source == source and not hasattr(cfg, "use_depth") and not hasattr(cfg, "use_colmap_depth")
    assert "use depth_source = " + source in caplog.text


def test_checkpoint_configs_with_the_seed_keys_are_upgraded():
    assert options.upgrade_config({"use_depth": 1, "use_colmap_depth": 1, "seed": 3}) == {
        "seed": 3, "depth_source": "colmap"}
    assert options.upgrade_config({"use_depth": 0, "use_colmap_depth": 1}) == {"depth_source": "none"}
    assert options.upgrade_config({"depth_source": "static_model"}) == {"depth_source": "static_model"}


def test_depth_source_contradicting_the_seed_keys_is_refused():
    with pytest.raises(UserError, match="depth_source colmap contradicts use_depth = 1, use_colmap_depth = 0"):
        options.resolve(options.parse(["--datadir", "x", "--depth_source", "colmap", "--use_depth", "1",
                                       "--use_colmap_depth", "0"]))



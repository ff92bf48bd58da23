"""Mixed precision: bfloat16 autocast on CPU trains, renders and evaluates like float32; --amp choices per
device; bad device/amp requests end with one line and exit code 2."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.errors import UserError
from engine import precision as prec
from engine.precision import Precision, resolve_precision
from engine.train.trainer import Trainer
from engine.workflow import finish_training

ROOT = Path(__file__).resolve().parents[1]


def test_cpu_amp_choices():
    cpu = torch.device("cpu")
    assert resolve_precision(-1, cpu) == Precision("cpu")  # auto: off on CPU
    assert resolve_precision(0, cpu) == Precision("cpu")
    on = resolve_precision(1, cpu)
    assert on.dtype == torch.bfloat16 and not on.needs_scaler
    assert "bfloat16" in on.describe() and "float32" in Precision("cpu").describe()


@pytest.mark.parametrize("cap, dtype", [((9, 0), torch.bfloat16), ((8, 0), torch.bfloat16),
                                        ((7, 5), torch.float16), ((6, 1), torch.float16)])
def test_cuda_amp_dtype_by_capability(monkeypatch, cap, dtype):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: cap)
    for amp in (-1, 1):
        p = resolve_precision(amp, torch.device("cuda"))
        assert p.dtype == dtype and p.needs_scaler == (dtype == torch.float16)
    assert resolve_precision(0, torch.device("cuda")).dtype is None


def test_amp_on_gpu_without_half_support_is_a_user_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (5, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Old GPU")
    assert resolve_precision(-1, torch.device("cuda")).dtype is None  # auto falls back to float32
    with pytest.raises(UserError, match=r"--amp 1 but Old GPU \(compute capability 5.0\)"):
        resolve_precision(1, torch.device("cuda"))
    assert prec.MIN_FP16_CAPABILITY == (5, 3)


@pytest.mark.parametrize("compose", ["replace", "gate"])
def test_model_outputs_stay_float32_under_autocast(make_cfg, compose):
    trainer = Trainer(make_cfg(f"amp_forward_{compose}", n_iters=1, extra=["--dynamic_compose", compose]))
    batch = trainer.data.gather(trainer.sampler.next()[:64])
    dyn = torch.arange(64) % 2 == 0  # half the rays through the dynamic branch
    ref = trainer.model(batch, ray_dynamic=dyn)
    assert ref.dynamic_mask.any()
    with Precision("cpu", torch.bfloat16).autocast():
        out = trainer.model(batch, ray_dynamic=dyn)
    for name in ("rgb", "depth", "static_rgb", "static_depth", "acc", "weights"):
        got = getattr(out, name)
        assert got.dtype == torch.float32, name
        # bfloat16 keeps 8 bits of mantissa: colours agree to a few 1e-3 of their [0, 1] range
        assert (got - getattr(ref, name)).abs().max() < 0.05, name


def _train(make_cfg, name: str, amp: int, static_only: int) -> float:
    cfg = make_cfg(name, n_iters=30, upsamp_list=(10, 20), alpha_mask_list=(15,),
                   extra=["--amp", str(amp), "--static_only", str(static_only), "--render_test", "1",
                          "--n_test_images", "1"])
    trainer = Trainer(cfg)
    assert trainer.precision.enabled == bool(amp)
    finish_training(trainer, trainer.fit())
    metrics = json.loads((trainer.run_dir / "metrics.json").read_text())
    return metrics["test"]["cam00"]["psnr"]


@pytest.mark.parametrize("static_only", [0, 1])
def test_bf16_training_matches_float32(make_cfg, static_only):
    """30 iterations with bfloat16 autocast (training, then render + evaluation under autocast) reach the
    test PSNR of the float32 run within 0.5 dB."""
    fp32 = _train(make_cfg, f"fp32_{static_only}", 0, static_only)
    bf16 = _train(make_cfg, f"bf16_{static_only}", 1, static_only)
    assert fp32 > 12.0  # it learned something (the untrained model renders black)
    assert abs(bf16 - fp32) < 0.5, (bf16, fp32)


def test_cuda_device_without_cuda_exits_2(tiny_scene, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    cmd = [sys.executable, str(ROOT / "train.py"), "--datadir", str(tiny_scene), "--basedir", str(tmp_path),
           "--device", "cuda", "--n_iters", "1"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert lines[-1] == "error: --device 'cuda' requested but CUDA is not available"
    assert "Traceback" not in res.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_cuda_device_index_beyond_the_machine_is_a_user_error(monkeypatch):
    from engine.train.setup import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("cuda:1") == torch.device("cuda", 1) and pick_device("cuda") == torch.device("cuda")
    with pytest.raises(UserError, match=r"--device 'cuda:2': this machine has 2 CUDA device\(s\) \(cuda:0 .. cuda:1\)"):
        pick_device("cuda:2")


def test_masked_mse_by_hand():
    from models.losses import masked_mse
    pred = torch.tensor([[[0.0, 0.0, 0.0]], [[1.0, 1.0, 1.0]], [[0.5, 0.5, 0.5]]])  # [N=3, T=1, 3]
    target = torch.zeros_like(pred)
    mask = torch.tensor([False, True, True])
    assert masked_mse(pred, target, mask).item() == pytest.approx((3 * 1.0 + 3 * 0.25) / 6)
    assert masked_mse(pred, target, torch.zeros(3, dtype=torch.bool)).item() == 0.0  # no dynamic ray: no term


def test_lpips_runs_on_the_evaluation_device(monkeypatch, tmp_path):
    """LPIPS follows the device it is given (CPU by default), never a GPU it was not asked to use."""
    import types

    import numpy as np

    from engine.evaluation import metrics
    (tmp_path / "lpips" / "weights" / "v0.1").mkdir(parents=True)
    (tmp_path / "lpips" / "weights" / "v0.1" / "alex.pth").touch()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / metrics.LPIPS_BACKBONE_FILES["alex"]).touch()
    devices = []

    class FakeLPIPS(torch.nn.Module):
        def __init__(self, **kw):
            super().__init__()

        def to(self, device):
            devices.append(torch.device(device))
            return self

        def forward(self, p, g, normalize):
            return (p - g).abs().mean((1, 2, 3))

    monkeypatch.setitem(sys.modules, "lpips", types.SimpleNamespace(__file__=str(tmp_path / "lpips" / "x.py"),
                                                                   LPIPS=FakeLPIPS))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU is present but not chosen
    img = np.zeros((2, 8, 8, 3), np.uint8)
    assert metrics.optional_metrics(img, img, names=("lpips",))["lpips"]["value"] == 0.0
    metrics.optional_metrics(img, img, names=("lpips",), device="cpu")
    assert devices == [torch.device("cpu"), torch.device("cpu")]

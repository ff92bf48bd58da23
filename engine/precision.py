"""Mixed precision: which autocast dtype a device gets, and the contexts that apply it.

``--amp``: -1 (default) = auto (on for CUDA, off for CPU), 0 = float32, 1 = on.
When on, the model's MLP heads and basis matmuls run under :func:`torch.autocast`:

- CUDA: bfloat16 where the GPU supports it natively (compute capability >= 8.0: A100, H100,
  RTX 30xx/40xx ...); otherwise float16 with a :class:`torch.amp.GradScaler` (float16 gradients of
  the small losses underflow without loss scaling). float16 needs compute capability >= 5.3.
- CPU: bfloat16 (no scaler; same exponent range as float32). Usually slower than float32 on CPUs
  without bf16 instructions: it exists so that the mixed-precision path is exercised by the tests.

Grid lookups, compositing, losses and the optimizer stay float32: the model casts head outputs
into float32 buffers (see :mod:`models.mixvoxels`), the trainer computes losses on float32.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from core.errors import UserError

MIN_FP16_CAPABILITY = (5, 3)  # native half arithmetic


@dataclass(frozen=True)
class Precision:
    """How a device computes: ``dtype`` None = float32 (autocast off)."""

    device_type: str
    dtype: torch.dtype | None = None

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    @property
    def needs_scaler(self) -> bool:
        """float16 needs loss scaling; bfloat16 and float32 do not."""
        return self.dtype == torch.float16

    def autocast(self):
        """Context running the enclosed ops under autocast (a no-op when off)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def describe(self) -> str:
        if self.dtype is None:
            return "off (float32)"
        name = str(self.dtype).removeprefix("torch.")
        return f"on ({name} autocast" + (", GradScaler)" if self.needs_scaler else ")")


def cuda_amp_dtype(device: torch.device) -> torch.dtype | None:
    """bfloat16 where natively supported, else float16 where the GPU has half arithmetic, else None."""
    cap = torch.cuda.get_device_capability(device)
    if cap >= (8, 0):
        return torch.bfloat16
    if cap >= MIN_FP16_CAPABILITY:
        return torch.float16
    return None


def resolve_precision(amp: int, device: torch.device) -> Precision:
    """``--amp`` (-1 auto, 0 off, 1 on) on ``device`` -> :class:`Precision`; UserError when 1 cannot run."""
    if amp not in (-1, 0, 1):
        raise UserError(f"config: --amp must be -1 (auto), 0 or 1, got {amp}")
    if amp == 0:
        return Precision(device.type)
    if device.type == "cuda":
        dtype = cuda_amp_dtype(device)
        if dtype is None and amp == 1:
            cap = ".".join(map(str, torch.cuda.get_device_capability(device)))
            raise UserError(f"config: --amp 1 but {torch.cuda.get_device_name(device)} (compute capability {cap}) "
                            f"supports neither bfloat16 nor float16 autocast; use --amp 0")
        return Precision("cuda", dtype)
    if device.type == "cpu":
        return Precision("cpu", torch.bfloat16 if amp == 1 else None)
    if amp == 1:
        raise UserError(f"config: --amp 1 is supported on cuda and cpu devices, not {device.type}")
    return Precision(device.type)


def device_name(device: torch.device) -> str:
    """'cuda:0 (NVIDIA H200)' or 'cpu'."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)

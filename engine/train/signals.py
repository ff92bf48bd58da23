"""Graceful stop on SIGINT / SIGTERM for long loops (training).

Inside ``with StopRequest() as stop:`` the first SIGINT or SIGTERM only records itself in
``stop.signal``; the loop checks it at a safe point (between iterations), saves and leaves.
The handler that was installed before is put back at once, so a second signal acts as it
would have without us (Ctrl-C twice = KeyboardInterrupt now). All previous handlers are
restored on exit. Outside the main thread (where Python cannot install handlers) it does nothing.
"""
from __future__ import annotations

import signal
import threading
from pathlib import Path

from core.errors import UserError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(UserError):
    """Training stopped on a signal after saving a checkpoint (exit code 2, one line)."""


class TrainingDiverged(UserError):
    """Training stopped on a non-finite loss; nothing was saved after the last good checkpoint."""


class StopRequest:
    """Context manager recording the first SIGINT/SIGTERM instead of dying on it."""

    def __init__(self, signals=SIGNALS):
        self.signals = tuple(signals)
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal is not None else ""

    def _handle(self, signum, frame) -> None:
        if self.signal is None:
            self.signal = signum
        previous = self._previous.get(signum)
        if previous is not None:
            signal.signal(signum, previous)  # a second signal gets the old behaviour

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()


def check_finite_loss(loss, terms: dict, step: int, ckpt) -> None:
    """Stop training with one line when the loss is NaN/inf (the last checkpoint on disk was written before).

    loss: scalar tensor; terms: {name: scalar tensor}; ckpt: the run's checkpoint path."""
    import torch

    if bool(torch.isfinite(loss)):
        return
    bad = [k for k, v in terms.items() if not bool(torch.isfinite(v))]
    kept = f"the last good checkpoint {ckpt} is kept" if Path(ckpt).is_file() else "no checkpoint was written"
    raise TrainingDiverged(f"{Path(ckpt).parent}: the loss became {float(loss.detach())} at iteration {step} (terms "
                           f"{', '.join(bad)}); stopped, {kept}; lower --lr_init / the loss weights")

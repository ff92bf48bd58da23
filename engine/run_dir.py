"""The run directory ``<basedir>/<expname>/`` of a training: which one, who holds it, what it may replace.

* One writer at a time: a training holds an exclusive ``fcntl`` lock on ``RUN/.lock`` (holding its
  pid) from before it looks at the folder until the process ends; a second training into the same
  folder stops at once naming the holder's pid. The OS drops the lock when the holder dies.
* Nothing is replaced silently: a folder holding a checkpoint is refused unless ``--overwrite 1``
  (which first removes the old run's outputs, :data:`RUN_OUTPUTS`, so no stale renders stay next to
  the new ones) or ``--resume 1`` from that folder's own checkpoint.
* Resume goes to ``basedir/expname`` like any run; when no ``--config`` is given the checkpoint's own
  config is the base (:func:`checkpoint_defaults`) and its folder is the run dir unless ``--expname``
  or ``--basedir`` say otherwise.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import time
from pathlib import Path

from core.errors import UserError
from dataLoader.atomic_io import write_error

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are not protected against each other there
    fcntl = None

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
# What a training run writes into its folder (removed by --overwrite 1 before the new run starts).
RUN_OUTPUTS = ("ckpt.pt", "config.txt", "history.json", "metrics.json", "report.html", "training_curves.png",
               "test", "videos", "vis", "tensorboard")
# Config keys never taken from a checkpoint when it is the base config of a resume.
_NOT_INHERITED = {"config", "base_config", "depth_config", "resume", "ckpt", "overwrite", "basedir", "expname"}


class RunLock:
    """Exclusive lock on ``run_dir/.lock``; held until :meth:`release` or the process ends."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fh = None
        try:
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a+b", buffering=0)
            if fcntl is not None and not _try_lock(self._fh, retries=5):  # a probe holds it for microseconds
                self._fh.seek(0)
                holder = self._fh.read().decode(errors="replace").strip()
                self.release()
                raise _locked(run_dir, holder)
            self._fh.truncate(0)
            self._fh.write(f"{os.getpid()}\n".encode())
        except OSError as exc:
            self.release()
            raise write_error(self.path, exc) from None

    def release(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None


def _try_lock(fh, retries: int = 0) -> bool:
    for attempt in range(retries + 1):
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt < retries:
                time.sleep(0.05)
    return False


def _locked(run_dir: Path, holder: str) -> UserError:
    return UserError(f"{run_dir}: another training (pid {holder or 'unknown'}) is writing this run directory; "
                     f"wait for it or choose another --expname")


def check_not_locked(run_dir: Path) -> None:
    """UserError at once when another process holds ``run_dir/.lock`` (reads it only; writes nothing)."""
    if fcntl is None:
        return
    try:
        fh = open(Path(run_dir) / LOCK_NAME, "rb")
    except OSError:
        return  # no lock file: nobody holds it
    with fh:
        if not _try_lock(fh):
            raise _locked(run_dir, fh.read().decode(errors="replace").strip())


def checkpoint_defaults(ckpt: str | Path) -> dict:
    """The config stored in ``ckpt`` as parser defaults for a resume without ``--config``.

    The run dir defaults to the checkpoint's own folder (``basedir`` = its parent, ``expname`` = its name).
    """
    from engine.checkpoint import load_checkpoint  # torch import only when resuming

    ckpt = Path(ckpt)
    saved = load_checkpoint(ckpt)["config"]
    defaults = {k: v for k, v in saved.items() if k not in _NOT_INHERITED}
    defaults.update(basedir=str(ckpt.resolve().parent.parent), expname=ckpt.resolve().parent.name)
    return defaults


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def _check_reuse(run_dir: Path, cfg: argparse.Namespace) -> None:
    existing = run_dir / "ckpt.pt"
    if not existing.exists() or cfg.overwrite:
        return
    if cfg.resume and _same_file(existing, Path(cfg.ckpt)):
        return
    if cfg.resume:
        raise UserError(f"{run_dir}: holds another checkpoint than --ckpt {cfg.ckpt}; resume into a new "
                        f"--expname, or pass --overwrite 1 to replace that run")
    raise UserError(f"{run_dir}: a run with this name exists; choose --expname, or pass --overwrite 1 "
                    f"(or --resume 1 --ckpt {existing})")


def clear_previous_run(run_dir: Path, keep: Path | None = None) -> None:
    """Remove the outputs of an earlier run in ``run_dir`` (``keep``: a checkpoint being resumed from)."""
    for name in RUN_OUTPUTS:
        path = run_dir / name
        if keep is not None and _same_file(path, keep):
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        except OSError as exc:
            raise UserError(f"{path}: cannot remove the previous run's output ({exc.strerror or exc})") from None


def run_dir_for(cfg: argparse.Namespace) -> Path:
    """``basedir/expname`` after checking (without writing anything) that this run may use it."""
    run_dir = Path(cfg.basedir) / cfg.expname
    for parent in (run_dir, *run_dir.parents):
        if parent.exists() and not parent.is_dir():
            raise UserError(f"{parent}: exists and is not a folder (check --basedir/--expname)")
    check_not_locked(run_dir)
    _check_reuse(run_dir, cfg)
    return run_dir


def lock_run_dir(run_dir: Path, cfg: argparse.Namespace) -> RunLock:
    """Create and lock ``run_dir`` for this process, check again under the lock (a run may have finished
    meanwhile), and with ``--overwrite 1`` remove the previous run's outputs. Call before writing into it."""
    lock = RunLock(run_dir)
    try:
        _check_reuse(run_dir, cfg)
        if cfg.overwrite:
            clear_previous_run(run_dir, keep=Path(cfg.ckpt) if cfg.resume else None)
    except UserError:
        lock.release()
        raise
    log.info("run directory %s (locked by pid %d)", run_dir, os.getpid())
    return lock

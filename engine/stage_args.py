"""Flags every stage shares, spelled and meant the same way everywhere.

``--datadir`` (a positional DATADIR is accepted as an alias where scripts always took one) with
``--data_root`` for relative paths, as in training configs; ``--downsample`` (alias
``--downsample_train``): the capture size that ``poses_bounds.npy`` states divided by this.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from core.errors import UserError

DOWNSAMPLE_HELP = ("work at the capture size (H, W in poses_bounds.npy; the videos' size) divided by this, "
                   "the same number in every stage")


def add_datadir(p, positional: bool = True, help: str = "scene directory") -> None:
    """``--datadir`` and ``--data_root`` (and an optional positional DATADIR, the same thing)."""
    if positional:
        p.add_argument("datadir_pos", nargs="?", default="", metavar="DATADIR", help="same as --datadir")
    p.add_argument("--datadir", default="", help=f"{help} (relative to --data_root unless absolute)")
    p.add_argument("--data_root", default=".", help="root for a relative datadir")


def add_downsample(p, default: float = 1.0) -> None:
    p.add_argument("--downsample", "--downsample_train", dest="downsample", type=float, default=default,
                   help=DOWNSAMPLE_HELP)


def datadir_of(args: argparse.Namespace) -> str:
    """The scene directory from ``--datadir`` or the positional alias; UserError when missing or ambiguous."""
    pos, flag = getattr(args, "datadir_pos", ""), args.datadir
    if pos and flag and Path(pos) != Path(flag):
        raise UserError(f"DATADIR {pos} and --datadir {flag} disagree; give one")
    d = pos or flag
    if not d:
        raise UserError("no scene directory: pass --datadir DATADIR")
    return str(d if Path(d).is_absolute() else Path(args.data_root) / d)


def _convert(action: argparse.Action, text: str):
    conv = action.type or str
    if action.nargs in ("*", "+") or isinstance(action.nargs, int):
        return [conv(v) for v in text.strip("[] ").replace(",", " ").split()]
    return conv(text)


def parse_with_config(p: argparse.ArgumentParser, argv: list[str] | None, keys: tuple[str, ...]) -> argparse.Namespace:
    """Parse ``argv``; with ``--config F`` the values of ``keys`` in F (a training config; ``downsample_train``
    counts as ``downsample``) become defaults, so the command line still wins. F's other keys (run control
    such as ``overwrite``, the frame range, ...) never reach a stage that means something else by them."""
    from engine.mixvoxels_config import read_key_values

    args = p.parse_args(argv)
    if not getattr(args, "config", None):
        return args
    path = Path(args.config)
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    values = read_key_values(path)
    if "downsample_train" in values:
        values.setdefault("downsample", values["downsample_train"])
    actions = {a.dest: a for a in p._actions}
    try:
        p.set_defaults(**{k: _convert(actions[k], values[k]) for k in keys if k in values})
    except ValueError as exc:
        raise UserError(f"{path}: {exc}") from None
    return p.parse_args(argv)

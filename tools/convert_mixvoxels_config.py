"""Translate a MixVoxels config file (``configs/schedule*/<scene>_<iters>.txt`` of the MixVoxels release)
into this toolkit's keys; keys without an effect here are listed in the output's header and in one
warning line. ``train.py --config F`` also accepts such a file directly."""
from __future__ import annotations

import argparse

from engine.cli import run_main
from engine.mixvoxels_config import warn_unused, write_translation


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", help="MixVoxels config file")
    p.add_argument("dst", help="config file to write")
    args = p.parse_args(argv)
    tr = write_translation(args.src, args.dst)
    warn_unused(tr, args.src)
    print(f"wrote {args.dst}: {len(tr.values)} keys")


def cli() -> None:
    """Console entry point (see pyproject.toml)."""
    run_main(main)


if __name__ == "__main__":
    cli()

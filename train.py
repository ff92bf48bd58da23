"""Train a MixVoxels model (dynamic, or static with ``static_only 1``) from a config.

Writes ``<basedir>/<expname>/``: config.txt (resolved), ckpt.pt, history.json, metrics.json,
training_curves.png and test renders under test/.
"""
from __future__ import annotations

from engine import options
from engine.cli import run_main
from engine.train.trainer import Trainer
from engine.workflow import finish_training


def main() -> None:
    cfg = options.resolve(options.parse())
    trainer = Trainer(cfg)
    ckpt = trainer.fit()
    summary = finish_training(trainer, ckpt)
    print(summary)


def cli() -> None:
    """Console entry point (see pyproject.toml)."""
    run_main(main)


if __name__ == "__main__":
    cli()

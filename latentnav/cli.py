"""The command line: a LightningCLI over any LightningModule / LightningDataModule.

Models and data are chosen in YAML with ``class_path`` / ``init_args`` (see ``configs/``).
Every run gets, without asking: TensorBoard logging under ``runs/``, a checkpoint callback
writing the best checkpoint and ``last.ckpt`` (always the latest state) (configure under ``checkpoint:``), a
per-process thread budget (``threads:``) and an end-of-run summary (``summary:``).
"""

from __future__ import annotations

import sys
from typing import Optional

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningCLI

from callbacks.checkpoint import Checkpoint
from callbacks.run_summary import RunSummary
from callbacks.thread_budget import ThreadBudget
from latentnav.errors import LatentNavError


class LatentNavCLI(LightningCLI):
    def __init__(self, args: Optional[list[str]] = None, run: bool = True, **kwargs) -> None:
        super().__init__(
            pl.LightningModule,
            pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={
                "logger": {
                    "class_path": "pytorch_lightning.loggers.TensorBoardLogger",
                    "init_args": {"save_dir": "runs", "name": "default"},
                },
            },
            args=args,
            run=run,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(Checkpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.filename": "best-{epoch}-{step}"})
        parser.add_lightning_class_args(ThreadBudget, "threads")
        parser.add_lightning_class_args(RunSummary, "summary")


def main(args: Optional[list[str]] = None) -> None:
    """Entry point of ``train.py`` and ``latentnav-train``: user errors print as one line."""
    try:
        LatentNavCLI(args=args)
    except LatentNavError as e:
        print(f"latentnav: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None

"""The command line: a LightningCLI over any LightningModule / LightningDataModule.

Models and data are chosen in YAML with ``class_path`` / ``init_args`` (see ``configs/``).
Every run gets, without asking: TensorBoard logging under ``runs/``, a checkpoint callback
writing the best checkpoint and ``last.ckpt`` (always the latest state) (configure under ``checkpoint:``), a
per-process thread budget (``threads:``), an end-of-run summary (``summary:``) and a clean
exit of distributed ranks (``callbacks/process_group_exit.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningCLI

from latentnav.callbacks.checkpoint import Checkpoint
from latentnav.callbacks.process_group_exit import ProcessGroupExit
from latentnav.callbacks.run_summary import RunSummary
from latentnav.callbacks.thread_budget import ThreadBudget
from latentnav.errors import ConfigError, run_command

_LIGHTNING_CKPT_ALIASES = {"best", "last", "hpc", "registry"}


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

    def _parse_ckpt_path(self) -> None:
        # LightningCLI replaces the model's arguments with the checkpoint's hyper-parameters.
        # A generator given on the command line must not be swapped silently for the
        # checkpoint's; other replaced values are reported.
        sub = self.config.get("subcommand")
        before = _model_args(self.config[sub]) if sub else {}
        super()._parse_ckpt_path()
        after = _model_args(self.config[sub]) if sub else {}
        changed = {k: (before[k], after.get(k)) for k in before if k in after and before[k] != after[k]}
        if "generator" in changed:
            mine, theirs = changed.pop("generator")
            raise ConfigError(
                f"checkpoint was made with generator {theirs}, but model.generator is {mine}; "
                "pass the checkpoint's generator to resume"
            )
        if changed:
            listed = ", ".join(f"{k}={v[1]!r} (not {v[0]!r})" for k, v in changed.items())
            print(f"latentnav: --ckpt_path restores the checkpoint's model arguments: {listed}", file=sys.stderr)

    def before_instantiate_classes(self) -> None:
        ckpt = (self.config.get(self.subcommand) or {}).get("ckpt_path") if self.subcommand else None
        if ckpt and ckpt not in _LIGHTNING_CKPT_ALIASES and not Path(ckpt).is_file():
            raise ConfigError(f"--ckpt_path: checkpoint {ckpt} not found")

    def before_fit(self) -> None:
        # Before the Trainer's prepare_data (the annotation job): callbacks that take values from the
        # data check them now, so that a mismatch is one line before hours of annotation, not after.
        for callback in self.trainer.callbacks:
            take = getattr(callback, "take_from_data", None)
            if take is not None and self.datamodule is not None:
                take(self.datamodule)

    def instantiate_trainer(self, **kwargs) -> pl.Trainer:
        # Not a config key: a clean exit of distributed ranks is not a choice (see the callback).
        trainer = super().instantiate_trainer(**kwargs)
        trainer.callbacks.append(ProcessGroupExit())
        return trainer

    def add_arguments_to_parser(self, parser) -> None:
        # A value is written once. Where the chosen classes have these fields (others skip the link):
        # the model's attribute list is the data's; the unsupervised data draws the model's K directions;
        # a supervised model's latent size is the generator's, read by the data when it is built.
        parser.link_arguments("data.init_args.attributes", "model.init_args.attributes")
        parser.link_arguments("model.init_args.num_directions", "data.init_args.num_directions")
        parser.link_arguments("data.latent_dim", "model.init_args.latent_dim", apply_on="instantiate")
        parser.add_lightning_class_args(Checkpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.filename": "best-{epoch}-{step}"})
        parser.add_lightning_class_args(ThreadBudget, "threads")
        parser.add_lightning_class_args(RunSummary, "summary")


def _model_args(config) -> dict:
    model = config.get("model") if config is not None else None
    args = getattr(model, "init_args", None) or getattr(model, "dict_kwargs", None) or {}
    return dict(vars(args)) if hasattr(args, "__dict__") else dict(args)


# latentnav SUBCOMMAND ...: the commands besides LightningCLI's fit / validate / test / predict.
SUBCOMMANDS = {
    "edit": ("latentnav.edit", "main", "edit images along directions (PNG strip + GIF per attribute)"),
    "sefa": ("latentnav.sefa", "main", "closed-form directions from the generator's weights (SeFa)"),
    "ganspace": ("latentnav.ganspace", "main", "principal directions of sampled features (GANSpace)"),
    "compare": ("latentnav.compare", "main", "name every direction and compare methods on one yardstick"),
    "annotate": ("latentnav.tools", "annotate_main", "fill the supervised datamodule's annotation store"),
    "generator": ("latentnav.generator_tools", "main", "info | quality | export | convert"),
    "classifier": ("latentnav.tools", "classifier_main", "export a trained classifier as an annotator file"),
    "render-demo": ("latentnav.tools", "render_demo_main", "render demo faces in CelebA's layout"),
}
LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


def usage() -> str:
    lines = ["usage: latentnav {fit,validate,test,predict} --config CONFIG.yaml [...]   (LightningCLI; --help)",
             "       latentnav SUBCOMMAND [...]   (SUBCOMMAND --help)", "", "subcommands:"]
    lines += [f"  {name:<12} {what}" for name, (_, _, what) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(args: Optional[list[str]] = None) -> None:
    """The ``latentnav`` entry point (also ``train.py``): LightningCLI's subcommands, or one of
    :data:`SUBCOMMANDS`; user errors print as one line."""
    argv = sys.argv[1:] if args is None else list(args)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        module, function, _ = SUBCOMMANDS[argv[0]]
        code = getattr(importlib.import_module(module), function)(argv[1:])
    elif not argv or argv[0] in ("-h", "--help") and len(argv) == 1:
        print(usage())
        code = 0 if argv else 2
    else:
        code = run_command(lambda: LatentNavCLI(args=args))
    if code:
        raise SystemExit(code)

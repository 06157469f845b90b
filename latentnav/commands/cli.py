"""The command line: a LightningCLI over any LightningModule / LightningDataModule.

Models and data are chosen in YAML with ``class_path`` / ``init_args`` (see ``configs/``).
Every run gets, without asking: TensorBoard logging under ``runs/`` in a version folder of its
own (claimed exclusively: two runs started together never share one), a checkpoint callback
writing the best checkpoint and ``last.ckpt`` (always the latest state, written atomically)
(configure under ``checkpoint:``), a guard against a runaway loss (``divergence:``), a
per-process thread budget (``threads:``), an end-of-run summary (``summary:``), a record of
what the checkpoints were trained from (``callbacks/run_identity.py``) and a clean exit of
distributed ranks (``callbacks/process_group_exit.py``). Before a fit: ``--ckpt_path`` is read
weights-only and must be a training checkpoint of the same model, data and data sources; the
output folders must be writable with room for two checkpoints.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningCLI

from latentnav.callbacks.checkpoint import Checkpoint
from latentnav.callbacks.divergence_guard import DivergenceGuard
from latentnav.callbacks.logger_writes import LoggerWrites
from latentnav.callbacks.preemption import Preemption
from latentnav.callbacks.process_group_exit import ProcessGroupExit
from latentnav.callbacks.run_identity import KEY as RUN_KEY, RunIdentity, check_run_identity, run_identity
from latentnav.callbacks.run_summary import RunSummary
from latentnav.callbacks.precision_probe import PrecisionProbe
from latentnav.callbacks.thread_budget import ThreadBudget
from latentnav.errors import ConfigError, run_command

_LIGHTNING_CKPT_ALIASES = {"best", "last", "hpc", "registry"}
# Model arguments computed from the data when both are built ({model argument: data attribute}): a
# checkpoint records their values, the config does not (its value is filled in at instantiation).
LINKED_AT_INSTANTIATION = {"latent_dim": "data.latent_dim"}


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
        # LightningCLI would rebuild the model from the checkpoint's hyper-parameters: a value given on
        # the line (a new lr) was silently dropped (config.yaml, hparams and optimizer all kept the old
        # one), and a link target the class does not take (the data's latent_dim, recorded in the
        # unsupervised model's hparams) was passed to it on resume. Here the config builds the model and
        # must agree with the checkpoint: a different class, generator or model setting is one line.
        sub = self.config.get("subcommand")
        ckpt = self.config[sub].get("ckpt_path") if sub else None
        self.resume_checkpoint = None
        if not ckpt or ckpt in _LIGHTNING_CKPT_ALIASES:
            return
        if not Path(ckpt).is_file():
            raise ConfigError(f"--ckpt_path: checkpoint {ckpt} not found")
        from latentnav.safe_load import read_training_checkpoint

        self.resume_checkpoint = read_training_checkpoint(ckpt)  # weights-only; an unreadable file is one line
        recorded = dict(self.resume_checkpoint.get("hyper_parameters") or {})
        theirs_class = recorded.pop("_class_path", None)
        recorded.pop("_instantiator", None)
        mine_class = _model_class(self.config[sub])
        if theirs_class and mine_class and theirs_class != mine_class:
            raise ConfigError(f"--ckpt_path {ckpt}: holds a {theirs_class} model, but the config's model is "
                              f"{mine_class}; resume with the config it was trained with")
        mine = _plain(_model_args(self.config[sub]))
        differ = [k for k in mine if k in recorded and k not in LINKED_AT_INSTANTIATION
                  and _plain(recorded[k]) != mine[k]]
        if "generator" in differ:
            raise ConfigError(f"checkpoint was made with generator {recorded['generator']}, but model.generator is "
                              f"{mine['generator']}; pass the checkpoint's generator to resume")
        if differ:
            listed = "; ".join(f"model.{k} is {mine[k]!r} here but {_plain(recorded[k])!r} in the checkpoint"
                               for k in differ)
            raise ConfigError(f"--ckpt_path {ckpt}: {listed}. A resume continues that run with its model settings "
                              "and optimizer state: resume with the checkpoint's values, or start a new run "
                              "(without --ckpt_path)")

    def before_fit(self) -> None:
        # Before the Trainer's prepare_data (the annotation job): what would fail late fails now, as
        # one line: callbacks that take values from the data check them, a resumed checkpoint must
        # come from the same model, data and data sources, and the output folders must take two
        # checkpoints. Only the launching process checks the folders (other ranks have no version).
        for callback in self.trainer.callbacks:
            take = getattr(callback, "take_from_data", None)
            if take is not None and self.datamodule is not None:
                take(self.datamodule)
        if self.resume_checkpoint is not None:
            check_run_identity(self.resume_checkpoint.get(RUN_KEY), run_identity(self.model, self.datamodule),
                               self.config[self.subcommand].get("ckpt_path"))
        if _launching_process():
            from latentnav.commands.preflight import check_fit_outputs

            check_fit_outputs(self.trainer, self.model)

    def instantiate_trainer(self, **kwargs) -> pl.Trainer:
        # Not config keys: a clean exit of distributed ranks, the record of what a checkpoint was trained
        # from, stopping at a safe point on SIGTERM / SIGUSR1 and a logger's failed write stopping the
        # run are not choices (see the callbacks).
        trainer = super().instantiate_trainer(**kwargs)
        trainer.callbacks += [RunIdentity(), ProcessGroupExit(), Preemption(), LoggerWrites()]
        if _launching_process():
            claim_log_version(trainer)
        return trainer

    def add_arguments_to_parser(self, parser) -> None:
        # A value is written once. Where the chosen classes have these fields (others skip the link):
        # the model's attribute list is the data's; the unsupervised data draws the model's K directions;
        # a supervised model's latent size is the generator's, read by the data when it is built.
        parser.link_arguments("data.init_args.attributes", "model.init_args.attributes")
        parser.link_arguments("model.init_args.num_directions", "data.init_args.num_directions")
        for target, source in LINKED_AT_INSTANTIATION.items():
            parser.link_arguments(source, f"model.init_args.{target}", apply_on="instantiate")
        parser.add_lightning_class_args(Checkpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.filename": "best-{epoch}-{step}"})
        parser.add_lightning_class_args(DivergenceGuard, "divergence")
        parser.add_lightning_class_args(ThreadBudget, "threads")
        parser.add_lightning_class_args(PrecisionProbe, "precision_probe")
        parser.add_lightning_class_args(RunSummary, "summary")


def _launching_process() -> bool:
    """The process a user started (rank 0 of node 0): the one that names folders for the run."""
    from pytorch_lightning.utilities import rank_zero_only

    return rank_zero_only.rank == 0 and os.environ.get("NODE_RANK", "0") == "0"


def claim_log_version(trainer: pl.Trainer) -> None:
    """Give a TensorBoard logger with no set version the next ``version_N`` folder, created with
    ``mkdir`` (exclusive): two runs of one config started together took the same ``version_0`` (one
    folder, two event files, each overwriting the other's config, report and directions)."""
    from pytorch_lightning.loggers import TensorBoardLogger

    from latentnav.commands.preflight import make_folder

    for logger in trainer.loggers:
        if not isinstance(logger, TensorBoardLogger) or logger._version is not None:
            continue
        root = Path(logger.root_dir)
        make_folder("trainer.logger", root, "log folder")
        version = logger._get_next_version()
        while True:
            try:
                (root / f"version_{version}").mkdir()
                break
            except FileExistsError:
                version += 1
            except OSError as e:
                raise ConfigError(f"trainer.logger: cannot create a version folder in {root} ({e.strerror})") from None
        logger._version = version


def _model_class(config) -> Optional[str]:
    model = config.get("model") if config is not None else None
    return getattr(model, "class_path", None) if model is not None and not isinstance(model, dict) else (
        model.get("class_path") if isinstance(model, dict) else None)


def _plain(value):
    """Config values as plain data, comparable with a checkpoint's hparams (Namespaces -> dicts, tuples -> lists)."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _model_args(config) -> dict:
    model = config.get("model") if config is not None else None
    args = getattr(model, "init_args", None) or getattr(model, "dict_kwargs", None) or {}
    return dict(vars(args)) if hasattr(args, "__dict__") else dict(args)


# latentnav SUBCOMMAND ...: the commands besides LightningCLI's fit / validate / test / predict, each a
# ``latentnav.commands.grammar.Command`` (or a function making one): (module, attribute, what it does).
SUBCOMMANDS = {
    "edit": ("latentnav.commands.edit", "COMMAND", "edit images along directions (PNG strip + GIF per attribute)"),
    "project": ("latentnav.commands.project", "COMMAND", "project image files into the generator's latent space"),
    "explore": ("latentnav.commands.explore", "COMMAND",
                "an edit explorer in the browser (pip install 'latentnav[explore]')"),
    "sefa": ("latentnav.commands.sefa", "COMMAND", "closed-form directions from the generator's weights (SeFa)"),
    "ganspace": ("latentnav.commands.ganspace", "COMMAND", "principal directions of sampled features (GANSpace)"),
    "compare": ("latentnav.commands.compare", "COMMAND", "name every direction and compare methods on one yardstick"),
    "annotate": ("latentnav.commands.tools", "annotate_command", "fill the supervised datamodule's annotation store"),
    "generator": ("latentnav.commands.generator_tools", "COMMAND", "info | quality | export | convert"),
    "import-boundaries": ("latentnav.commands.boundaries", "COMMAND",
                          "InterFaceGAN's boundary files (.npy) as a directions file"),
    "classifier": ("latentnav.commands.tools", "CLASSIFIER", "export a trained classifier as an annotator file"),
    "render-demo": ("latentnav.commands.tools", "RENDER_DEMO", "render demo faces in CelebA's layout"),
}
LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


def usage() -> str:
    lines = ["usage: latentnav {fit,validate,test,predict} --config CONFIG.yaml [...]   (LightningCLI; --help)",
             "       latentnav SUBCOMMAND [...]   (SUBCOMMAND --help)", "", "subcommands:"]
    lines += [f"  {name:<12} {what}" for name, (_, _, what) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def command(name: str):
    """The ``latentnav.commands.grammar.Command`` of subcommand ``name`` (imported on demand)."""
    import importlib

    module, attribute, _ = SUBCOMMANDS[name]
    found = getattr(importlib.import_module(module), attribute)
    return found if hasattr(found, "main") else found()


def main(args: Optional[list[str]] = None) -> None:
    """The ``latentnav`` entry point (also ``train.py``): LightningCLI's subcommands, or one of
    :data:`SUBCOMMANDS`; user errors print as one line."""
    argv = sys.argv[1:] if args is None else list(args)
    if argv and argv[0] in SUBCOMMANDS:
        code = command(argv[0]).main(argv[1:])
    elif not argv or argv[0] in ("-h", "--help") and len(argv) == 1:
        print(usage())
        code = 0 if argv else 2
    else:
        code = run_command(lambda: LatentNavCLI(args=args))
    if code:
        raise SystemExit(code)

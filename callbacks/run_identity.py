"""What a checkpoint was trained from, so that a resume cannot swap it silently."""

from __future__ import annotations

from typing import Any, Optional

import pytorch_lightning as pl

from latentnav.errors import ConfigError

KEY = "latentnav_run"


def class_path(obj: object) -> Optional[str]:
    return None if obj is None else f"{type(obj).__module__}.{type(obj).__qualname__}"


def run_identity(model: pl.LightningModule, datamodule: Optional[pl.LightningDataModule]) -> dict[str, Any]:
    """``{"model": class path, "data": class path or None, "sources": {field: {"source", "sha256"}}}``;
    ``sources`` are the files the data is made from, as the datamodule's ``source_identity()`` gives
    them (the supervised data's generator and annotator), when it has one."""
    sources = getattr(datamodule, "source_identity", None)
    return {"model": class_path(model), "data": class_path(datamodule), "sources": dict(sources()) if sources else {}}


def check_run_identity(saved: Optional[dict], current: dict, checkpoint: str) -> None:
    """One line if ``checkpoint`` (whose record is ``saved``) was trained from something else than
    ``current``. A checkpoint without a record (written before it existed) is not judged."""
    if not saved:
        return
    for field, what in (("model", "model"), ("data", "data")):
        if saved.get(field) and current.get(field) and saved[field] != current[field]:
            raise ConfigError(f"--ckpt_path {checkpoint}: trained with {what} {saved[field]}, but this run's "
                              f"{what} is {current[field]}; resume with the config it was trained with")
    theirs, mine = saved.get("sources") or {}, current.get("sources") or {}
    for field in sorted(set(theirs) & set(mine)):
        if theirs[field].get("sha256") != mine[field].get("sha256"):
            raise ConfigError(
                f"--ckpt_path {checkpoint}: trained with {field} {theirs[field].get('source')} (sha256 "
                f"{str(theirs[field].get('sha256'))[:12]}), but this run's is {mine[field].get('source')} "
                f"(sha256 {str(mine[field].get('sha256'))[:12]}); pass the same {field} to resume")


class RunIdentity(pl.Callback):
    """Writes :func:`run_identity` into every checkpoint (key ``latentnav_run``) and refuses to resume
    from one whose model class, data class or data sources differ (the CLI checks this earlier, before
    the annotation job; this is the same check for a Trainer used directly)."""

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint[KEY] = run_identity(pl_module, trainer.datamodule)

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        check_run_identity(checkpoint.get(KEY), run_identity(pl_module, trainer.datamodule),
                           str(trainer.ckpt_path or "checkpoint"))

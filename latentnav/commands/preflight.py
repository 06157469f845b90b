"""Checks before a fit starts: what would otherwise fail after an epoch (or after hours of annotation)."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterable, Optional

import pytorch_lightning as pl

from latentnav.atomic import atomic_write_bytes
from latentnav.errors import ConfigError

MB = 1 << 20


def output_folders(trainer: pl.Trainer) -> list[tuple[str, Path]]:
    """``(field, folder)`` for every folder this fit will write: the log version folder, an explicit
    checkpoint folder, and the folder of every callback's ``export_to``."""
    folders = []
    if trainer.loggers and trainer.loggers[0].log_dir is not None:
        folders.append(("trainer.logger", Path(trainer.loggers[0].log_dir)))
    else:
        folders.append(("trainer.default_root_dir", Path(trainer.default_root_dir)))
    for callback in trainer.callbacks:
        if isinstance(callback, pl.callbacks.ModelCheckpoint) and callback.dirpath is not None:
            folders.append(("checkpoint.dirpath", Path(callback.dirpath)))
        export_to = getattr(callback, "export_to", None)
        if export_to:
            folders.append((f"{type(callback).__name__}.export_to", Path(export_to).parent))
    return folders


def make_folder(field: str, folder: Path, what: str = "folder") -> None:
    """``mkdir -p folder``; a file standing in the way, a read-only mount or a missing permission is one
    line naming the setting ``field``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        in_the_way = "; a file is in the way" if isinstance(e, (FileExistsError, NotADirectoryError)) else ""
        raise ConfigError(f"{field}: cannot create {what} {folder} ({e.strerror or type(e).__name__}{in_the_way})") \
            from None


def check_writable(folders: Iterable[tuple[str, Path]]) -> None:
    """Each folder can be created and written (a file standing where a folder should be, a
    read-only mount or a missing permission is one line naming the field)."""
    for field, folder in folders:
        make_folder(field, folder)
        probe = folder / f".latentnav-write-probe-{os.getpid()}"
        try:
            atomic_write_bytes(probe, b"")
        except OSError as e:
            raise ConfigError(f"{field}: folder {folder} is not writable ({e.strerror or type(e).__name__})") from None
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()


def checkpoint_bytes(model: pl.LightningModule) -> int:
    """About what one checkpoint of ``model`` takes: its saved state (a frozen generator is not saved)
    plus two optimiser moments per trainable value (Adam), plus 1 MB of bookkeeping."""
    skip = getattr(model, "PREFIX", None)
    state = sum(v.numel() * v.element_size() for k, v in model.state_dict().items()
                if not (skip and k.startswith(skip)))
    trainable = sum(p.numel() * p.element_size() for n, p in model.named_parameters()
                    if p.requires_grad and not (skip and n.startswith(skip)))
    return state + 2 * trainable + MB


def check_free_space(folder: Path, model: pl.LightningModule, field: str = "checkpoints",
                     free: Optional[int] = None) -> None:
    """Room for two checkpoints in ``folder`` (the last good one is kept until its successor is whole)."""
    need = 2 * checkpoint_bytes(model)
    free = shutil.disk_usage(folder).free if free is None else free
    if free < need:
        raise ConfigError(f"{field}: {folder} has {free / MB:.1f} MB free, but two checkpoints of this model "
                          f"need about {need / MB:.1f} MB (the last good one is kept while the next is written)")


def check_fit_outputs(trainer: pl.Trainer, model: pl.LightningModule) -> None:
    """All of the above, for the folders of ``trainer`` and the checkpoints of ``model``."""
    folders = output_folders(trainer)
    check_writable(folders)
    checkpoint_dir = next((f for n, f in folders if n == "checkpoint.dirpath"), folders[0][1])
    check_free_space(checkpoint_dir, model)

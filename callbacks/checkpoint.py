"""ModelCheckpoint whose ``last.ckpt`` is always the latest state of the run, written atomically."""

from __future__ import annotations

from typing import Any, Optional

import pytorch_lightning as pl
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_info

from latentnav.atomic import atomic_torch_save, remove_orphans


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves a checkpoint next to its final name (same folder: same filesystem, whatever ``TMPDIR``
    is), fsyncs it and renames it over the old file. Lightning's own save stages the file in
    ``TMPDIR`` and copies it into place when that is another filesystem: a kill during the copy
    left a truncated ``last.ckpt``. Here a kill leaves the previous checkpoint whole and at most a
    temporary ``.NAME.tmp-PID-…`` file, which :class:`Checkpoint` removes when the next run starts."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        atomic_torch_save(checkpoint, path)


class Checkpoint(ModelCheckpoint):
    """Keeps the best checkpoints by ``monitor`` and, with ``save_last``, the latest one.

    Recent Lightning releases refresh ``last.ckpt`` only in a step that also wrote a
    top-k checkpoint, so once the monitored metric stops improving a resume would go back
    to the best step instead of where the run stopped; and with ``every_n_train_steps`` a
    mid-epoch save is deferred while the monitored metric (a validation metric) does not exist
    yet, so no mid-epoch ``last.ckpt`` was written at all. This refreshes ``last.ckpt`` every
    ``every_n_train_steps`` steps, after every validation and when training ends (``max_steps``
    reached mid-epoch too).

    Every file is written by :class:`AtomicCheckpointIO` (installed on the Trainer's strategy
    when it uses Lightning's plain torch IO; a user's own IO plugin is left alone), and the
    temporary files of killed runs are deleted from the checkpoint folder at setup.
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        if trainer.is_global_zero and self.dirpath is not None:
            for orphan in remove_orphans(self.dirpath):
                rank_zero_info(f"latentnav: removed {orphan.name}, a checkpoint a killed run did not finish")

    def _refresh_last(self, trainer: pl.Trainer) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        every = self._every_n_train_steps
        if every >= 1 and trainer.global_step % every == 0:
            self._refresh_last(trainer)  # skipped where this step is already saved

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # Pre-emption (SIGTERM / SIGUSR1, see callbacks/preemption.py): every rank stops at the same step, so
        # last.ckpt is written here as at any step, and the command's closing line names it.
        super().on_exception(trainer, pl_module, exception)
        if type(exception).__name__ != "SIGTERMException" or not self.save_last:
            return
        self._refresh_last(trainer)
        if self.last_model_path:
            exception.latentnav_resume = (f"stopped at global step {trainer.global_step}; resumable checkpoint "
                                          f"{self.last_model_path} (resume: fit --ckpt_path {self.last_model_path})")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._refresh_last(trainer)

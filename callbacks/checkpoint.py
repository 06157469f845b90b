"""ModelCheckpoint whose ``last.ckpt`` is always the latest state of the run."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint


class Checkpoint(ModelCheckpoint):
    """Keeps the best checkpoints by ``monitor`` and, with ``save_last``, the latest one.

    Recent Lightning releases refresh ``last.ckpt`` only in a step that also wrote a
    top-k checkpoint, so once the monitored metric stops improving a resume would go back
    to the best step instead of where the run stopped. This refreshes ``last.ckpt``
    after every validation and when training ends (``max_steps`` reached mid-epoch too).
    """

    def _refresh_last(self, trainer: pl.Trainer) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

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

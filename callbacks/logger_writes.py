"""A logger that cannot write stops the fit with one line naming its folder.

TensorBoard writes its events from a background thread: on a full disk the thread died with a traceback
of its own, and its error came back later from whatever logger call came next (or was lost): training
went on while its logs were not written. Here every logger's writing methods are guarded: the first
failed write raises :class:`~latentnav.errors.OutputWriteError` naming the logger's folder, printed as
one line by ``latentnav.errors.run_command`` (the last checkpoint stays as it was), and the logger stays
quiet afterwards (Lightning finalizes the loggers on the way out, which would raise the same error over
this one). The loggers are flushed every ``log_every_n_steps`` steps, so that a failure shows at the step
it happens rather than at the next write; the writer thread's own traceback is kept quiet.
"""

from __future__ import annotations

import threading

import pytorch_lightning as pl

from latentnav.errors import OutputWriteError

GUARDED = ("log_metrics", "log_hyperparams", "log_graph", "save", "finalize")


class LoggerWrites(pl.Callback):
    def __init__(self) -> None:
        self._previous_hook = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for logger in trainer.loggers:
            guard(logger)
        previous = self._previous_hook = threading.excepthook

        def quiet_writer_errors(args) -> None:
            # TensorBoard's _AsyncWriterThread keeps the error and raises it at the next flush.
            if isinstance(args.exc_value, OSError) and "Writer" in type(args.thread).__name__:
                return
            previous(args)

        threading.excepthook = quiet_writer_errors

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._previous_hook is not None:
            threading.excepthook = self._previous_hook
            self._previous_hook = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        if trainer.global_step % max(1, trainer.log_every_n_steps) == 0:
            for logger in trainer.loggers:
                flush = getattr(logger, "latentnav_flush", None)
                if flush is not None:
                    flush()


def guard(logger) -> None:
    """Wrap ``logger``'s writing methods (once): the first ``OSError`` becomes one ``OutputWriteError``
    line, later calls do nothing. Adds ``logger.latentnav_flush()`` (the experiment's flush, guarded)."""
    if getattr(logger, "latentnav_guarded", False):
        return
    state = {"failed": False}
    where = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None) or type(logger).__name__

    def guarded(method):
        def call(*args, **kwargs):
            if state["failed"]:
                return None
            try:
                return method(*args, **kwargs)
            except OSError as e:
                state["failed"] = True
                raise OutputWriteError(f"trainer.logger: cannot write to {where} ({e.strerror or e}); training "
                                       "stopped here, the last checkpoint is kept as it was (free some space, or "
                                       "log elsewhere with trainer.logger.init_args.save_dir)") from e

        return call

    for name in GUARDED:
        if hasattr(logger, name):
            setattr(logger, name, guarded(getattr(logger, name)))

    def flush() -> None:
        experiment = getattr(logger, "experiment", None)
        if hasattr(experiment, "flush"):
            experiment.flush()

    logger.latentnav_flush = guarded(flush)
    logger.latentnav_guarded = True

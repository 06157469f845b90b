"""Pre-emption: SIGTERM (what a scheduler sends before it kills a job) or SIGUSR1 stops a run at the next
safe point, keeps what it has, and makes the command exit non-zero with one line.

Lightning already turns SIGTERM into ``trainer.received_sigterm`` and stops ``fit`` and the validation /
test loops at the end of a batch with ``SIGTERMException``, a ``SystemExit`` whose code is ``None``: the
process exited **0** with no checkpoint, so a scheduler counted a killed job as a success. Its predict
loop (the annotation job, projections, edits) does not look at the flag at all and ran on. This callback:

- stops a predict loop too, at the end of a batch (the writers have saved that batch's shard or part).
  Each rank stops when *it* is signalled, without asking the others: the ranks of a predict pass may
  hold different numbers of batches, so a collective every batch would pair one rank's reduce with
  another's end-of-loop barrier. Schedulers signal every process of a job (SLURM every task, torchrun
  its workers, a terminal the process group Lightning starts its ranks in);
- treats SIGUSR1 like SIGTERM, except under SLURM with auto-requeue, where Lightning's own SIGUSR1
  handler saves an ``hpc`` checkpoint and requeues the job;
- tags the exception with the resume hint (``Checkpoint`` adds the path of the ``last.ckpt`` it writes
  on the way out), which ``latentnav.errors.run_command`` prints as one line before exiting 143 (128 +
  SIGTERM, the code a shell gives a process that SIGTERM ended).
"""

from __future__ import annotations

import signal
import threading

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

EXIT_CODE = 128 + signal.SIGTERM


class Preemption(pl.Callback):
    def __init__(self) -> None:
        self._previous_usr1 = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        from lightning_fabric.plugins.environments import SLURMEnvironment

        environment = trainer._accelerator_connector.cluster_environment
        if isinstance(environment, SLURMEnvironment) and environment.auto_requeue:
            return  # Lightning saves and requeues on SLURM's signal
        if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGUSR1"):
            return

        def as_sigterm(signum, frame) -> None:
            # Lightning's SIGTERM handler sets this flag; every loop checks it at the end of a batch.
            trainer._signal_connector.received_sigterm = True

        self._previous_usr1 = signal.signal(signal.SIGUSR1, as_sigterm)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._previous_usr1 is not None:
            signal.signal(signal.SIGUSR1, self._previous_usr1)
            self._previous_usr1 = None

    def on_predict_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        if trainer.received_sigterm:
            raise SIGTERMException()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        exception.latentnav_rank = trainer.global_rank
        if not getattr(exception, "latentnav_resume", None):
            exception.latentnav_resume = (
                f"stopped at global step {trainer.global_step}" if trainer.state.fn == "fit" else
                "stopped after a whole batch; what was written is kept (the annotation store and a projection "
                "resume from it): run the same command again")

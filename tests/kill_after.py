"""Test-only callbacks that SIGKILL this process at a chosen moment (a real crash)."""

import os
import signal
from pathlib import Path

import pytorch_lightning as pl


class KillAfterShards(pl.Callback):
    def __init__(self, out_dir: str, shards: int = 2) -> None:
        self.out_dir, self.shards = Path(out_dir), shards

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if len(list(self.out_dir.glob("shard_*.pt"))) >= self.shards:
            os.kill(os.getpid(), signal.SIGKILL)


def _die_halfway(target, data: bytes) -> None:
    """Write the first half of ``data`` to ``target`` (a path or an open file), make it durable, SIGKILL."""
    import io as _io

    f = open(target, "wb") if isinstance(target, (str, os.PathLike)) else target
    f.write(data[: len(data) // 2])
    f.flush()
    if not isinstance(f, _io.BytesIO):
        os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


class KillDuringLastCheckpointWrite(pl.Callback):
    """SIGKILL this process halfway through writing ``last.ckpt`` (a real crash at the worst moment),
    on the ``after_saves``-th checkpoint of the run (0 = the first).

    Whatever the checkpoint IO does, the kill lands when the bytes reach a file whose name contains
    ``last.ckpt``: ``torch.save`` into such a file (or its temporary), or ``shutil.move`` onto it
    (Lightning's fsspec transaction stages the file in ``TMPDIR`` and moves it into place). A save
    staged in memory is let through, so that the kill comes at the move."""

    def __init__(self, after_saves: int = 0) -> None:
        self.after_saves, self.saves = after_saves, 0

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if self.saves == self.after_saves:
            self._arm()
        self.saves += 1

    @staticmethod
    def _arm() -> None:
        import io as _io
        import shutil

        import torch

        real_save, real_move = torch.save, shutil.move

        def save(obj, f, *args, **kwargs):
            name = str(f) if isinstance(f, (str, os.PathLike)) else str(getattr(f, "name", ""))
            if "last.ckpt" not in name:
                return real_save(obj, f, *args, **kwargs)
            buffer = _io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            _die_halfway(f, buffer.getvalue())

        def move(src, dst, *args, **kwargs):
            if "last.ckpt" not in str(dst):
                return real_move(src, dst, *args, **kwargs)
            with open(src, "rb") as f:
                _die_halfway(str(dst), f.read())

        torch.save, shutil.move = save, move


class Crash(Exception):
    """A crash in the middle of training (test only)."""


class CrashAtStep(pl.Callback):
    """Raise :class:`Crash` before training step ``step`` runs (the checkpoints of the steps before it are
    on disk, as after a kill); a run in the test's own process stops like a killed one."""

    def __init__(self, step: int = 2) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_step >= self.step:
            raise Crash(f"crashed before step {trainer.global_step}")


class CountSteps(pl.Callback):
    """Records the global step at the start of training and after every step (in ``CountSteps.seen``,
    read by a test in the same process)."""

    seen: list[int] = []

    def on_train_start(self, trainer, pl_module) -> None:
        CountSteps.seen = [trainer.global_step]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        CountSteps.seen.append(trainer.global_step)

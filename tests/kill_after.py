"""A test-only callback: SIGKILL this process once ``out_dir`` holds ``shards`` shard files (a real crash)."""

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

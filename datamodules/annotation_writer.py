"""Writes the annotation predict job's batches as shards and, at the end, the manifest.

A ``BasePredictionWriter`` kept in the data layer: the supervised datamodule runs the job itself
(``AnnotatedLatentsDataModule.prepare_data``); configs name it as ``latentnav.callbacks.annotation_writer``.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Optional

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.distributed import _InfiniteBarrier
from pytorch_lightning.callbacks import BasePredictionWriter

from latentnav.annotation_shards import (LOCK, complete_shards, make_key, shard_range, write_manifest,
                                         write_shard)
from latentnav.atomic import file_lock, remove_orphans
from latentnav.errors import ConfigError


def with_classes(key: dict, classes) -> dict:
    """A store's key, with the class ids a class-conditional generator's latents were drawn from when they were
    given (``generator_options: {classes: [...]}``; all classes, the default, add nothing): a store made for other
    classes is another store."""
    return key if classes is None else dict(key, classes=[int(c) for c in classes])


class AnnotationWriter(BasePredictionWriter):
    """Shards + ``manifest.json`` in ``out_dir`` (format: ``latentnav/annotation_shards.py``).

    At setup every rank lists the shards already complete for this job's key (generator and
    classifier sha256, space, seed, sizes) and tells the datamodule to skip them: re-running a
    killed job computes only what is missing. Batches of a shard are buffered (latents and logits
    only, never images) and the shard is written atomically once whole. At the end the ranks
    meet and rank 0 checks every shard and writes the manifest.

    Two jobs on one store take turns: global rank 0 holds ``<out_dir>/.lock`` from setup (before
    the shards are listed) until the manifest is written, and clears the temporary files of
    killed writers on entering; the other ranks wait for it in a barrier without timeout.

    Args:
        out_dir: the store's folder.
        lock: take the store's lock (False when the caller already holds it, as
            ``AnnotatedLatentsDataModule.prepare_data`` does: a second flock would wait on itself).
    """

    def __init__(self, out_dir: str = "data/annotated_latents/demo/train", lock: bool = True) -> None:
        super().__init__(write_interval="batch")
        self.out_dir, self.lock = Path(out_dir), lock
        self._held = contextlib.ExitStack()  # the lock, while this job holds it
        self.key: Optional[dict] = None
        self.skipped: set[int] = set()
        self.written: list[int] = []  # shards this process wrote in this run
        self._buffers: dict[int, list[dict]] = {}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "predict":
            return
        # Batches are dicts from an IterableDataset: there are no sampler indices to infer (not needed here).
        warnings.filterwarnings("ignore", message=".*Couldn't infer the batch indices.*")
        warnings.filterwarnings("ignore", message=".*`IterableDataset` has `__len__` defined.*")
        dm = trainer.datamodule
        for needed in ("num", "seed", "shard_size", "skip"):
            if not hasattr(dm, needed):
                raise ConfigError(f"AnnotationWriter needs data.class_path: latentnav.datamodules.latent_indices."
                                  f"LatentIndicesDataModule (data has no {needed!r})")
        self.key = with_classes(make_key(pl_module.generator.identity["sha256"], pl_module.annotator.sha256,
                                         pl_module.space, dm.seed, dm.num, dm.shard_size),
                                (pl_module.generator.identity.get("options") or {}).get("classes"))
        # The loop would otherwise also keep every prediction in memory until the end (10 M latents).
        trainer.predict_loop.return_predictions = False
        if self.lock:
            # Waiting for another job can outlast the process group's collective timeout (30 min): the other
            # ranks wait for rank 0 in a barrier without one (Lightning's, as for prepare_data). Only in a
            # distributed job: a one-process job in a DDP rank must not start a collective the others never join.
            with _InfiniteBarrier() if trainer.world_size > 1 else contextlib.nullcontext():
                if trainer.is_global_zero:
                    self._held.enter_context(file_lock(self.out_dir / LOCK))
                    remove_orphans(self.out_dir)
        self.skipped = complete_shards(self.out_dir, self.key)
        dm.skip = set(self.skipped)
        self.written, self._buffers = [], {}
        if trainer.world_size > 1:  # no rank writes a shard before every rank has listed the finished ones
            trainer.strategy.barrier("annotation_shards_listed")

    def write_on_batch_end(self, trainer, pl_module, prediction: dict, batch_indices, batch, batch_idx: int,
                           dataloader_idx: int = 0) -> None:
        s = prediction["shard"]
        self._buffers.setdefault(s, []).append(prediction)
        r = shard_range(s, self.key["num"], self.key["shard_size"])
        if sum(len(p["indices"]) for p in self._buffers[s]) < len(r):
            return
        parts = self._buffers.pop(s)
        indices = torch.cat([p["indices"] for p in parts])
        if not torch.equal(indices, torch.arange(r.start, r.stop)):
            raise RuntimeError(f"shard {s}: batches arrived out of order")  # a bug, not a user error
        write_shard(self.out_dir, self.key, s, torch.cat([p["latents"] for p in parts]),
                    torch.cat([p["logits"] for p in parts]), pl_module.attributes)
        self.written.append(s)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        # SIGTERM: Lightning's predict loop runs on; the finished shards are the safe point. (The job inside
        # prepare_data has no callbacks/preemption.py, which a command's Trainer has: the layers.)
        if trainer.received_sigterm:
            from pytorch_lightning.utilities.exceptions import SIGTERMException

            raise SIGTERMException()

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._buffers:
            raise RuntimeError(f"shards {sorted(self._buffers)} were left incomplete")
        trainer.strategy.barrier("annotation_shards_written")  # every rank gets here: no rank-0-only collective
        if trainer.is_global_zero:
            write_manifest(self.out_dir, self.key, pl_module.attributes, dict(pl_module.generator.identity))
            print(f"\nlatentnav: {self.key['num']} annotated latents in {self.out_dir} "
                  f"({len(self.skipped)} shard(s) already done, {len(self.written)} written by rank 0)")
        self._held.close()
        trainer.strategy.barrier("annotation_manifest_written")

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._held.close()  # a failed job (in a process that goes on, e.g. a notebook) must not keep the store locked
        if type(exception).__name__ == "SIGTERMException" and self.key is not None:
            done = len(complete_shards(self.out_dir, self.key))
            exception.latentnav_resume = (f"the annotation store {self.out_dir} keeps its {done} complete shard(s); "
                                          "run the same command again to annotate the rest")

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._held.close()

"""Latent *indices* to annotate, in whole shards per rank (the data of the annotation predict job)."""

from __future__ import annotations


import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from latentnav.annotation_shards import num_shards, shard_range
from latentnav.errors import ConfigError


class ShardBatches(IterableDataset):
    """Batches ``{"indices": (<=B,) int64, "shard": s, "seed": seed}`` of this rank's shards, in order.

    Rank r of W takes every W-th of the shards still to do, so shards are never split across
    ranks (each is written by one process) and the work is balanced whatever was done before.
    An IterableDataset: Lightning adds no DistributedSampler and so no padding.
    """

    def __init__(self, shards: list[int], num: int, shard_size: int, batch_size: int, seed: int) -> None:
        self.shards, self.num, self.shard_size, self.batch_size, self.seed = shards, num, shard_size, batch_size, seed

    def __iter__(self):
        for s in self.shards:
            r = shard_range(s, self.num, self.shard_size)
            for start in range(r.start, r.stop, self.batch_size):
                yield {"indices": torch.arange(start, min(start + self.batch_size, r.stop)), "shard": s,
                       "seed": self.seed}

    def __len__(self) -> int:  # batches, for the progress bar
        # At least 1: Lightning refuses a zero-length loader on one rank of several and skips a loop of
        # length 0 whole, end hooks included; a rank with no shard left (a resumed job) must still reach
        # the writer's barriers and the manifest with the others. It then yields nothing.
        return max(1, sum(-(-len(shard_range(s, self.num, self.shard_size)) // self.batch_size) for s in self.shards))


class RankSlice(IterableDataset):
    """Batches ``{"indices", "shard": -1, "seed"}`` of indices ``rank, rank + W, ... < num``: every index on
    exactly one rank, no padding (a DistributedSampler would repeat some and bias summed metrics)."""

    def __init__(self, num: int, batch_size: int, seed: int, rank: int, world_size: int) -> None:
        self.indices = torch.arange(rank, num, world_size)
        self.batch_size, self.seed = batch_size, seed

    def __iter__(self):
        for chunk in self.indices.split(self.batch_size):
            yield {"indices": chunk, "shard": -1, "seed": self.seed}

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)


class LatentIndicesDataModule(pl.LightningDataModule):
    """Indices ``0 .. num - 1`` of the latent stream ``seed``: in whole shards of ``shard_size`` for the
    annotation predict job, in rank slices for measuring passes (``test_dataloader``).

    Args:
        num: latents to annotate.
        seed: the stream; latent i is a pure function of (seed, i).
        batch_size: latents per generator call.
        shard_size: latents per shard file (a multiple of nothing in particular; the last shard may be short).
        sliced_predict: ``predict_dataloader`` gives rank slices (like ``test_dataloader``) instead of
            whole shards: for predict loops that write no shards (the edit command's rendering).
    """

    def __init__(self, num: int = 20000, seed: int = 0, batch_size: int = 500, shard_size: int = 10000,
                 sliced_predict: bool = False) -> None:
        super().__init__()
        for field, value in (("num", num), ("batch_size", batch_size), ("shard_size", shard_size)):
            if value < 1:
                raise ConfigError(f"data.{field}: expected a positive integer, got {value}")
        if seed < 0:
            raise ConfigError(f"data.seed: expected a non-negative integer, got {seed}")
        self.num, self.seed, self.batch_size, self.shard_size = num, seed, batch_size, shard_size
        self.sliced_predict = sliced_predict
        self.skip: set[int] = set()  # shards already done (set by the writer before the loop starts)

    @property
    def num_shards(self) -> int:
        return num_shards(self.num, self.shard_size)

    def todo(self, rank: int = 0, world_size: int = 1) -> list[int]:
        missing = [s for s in range(self.num_shards) if s not in self.skip]
        return missing[rank::world_size]

    def predict_dataloader(self) -> DataLoader:
        if self.sliced_predict:
            return self.test_dataloader()
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        return DataLoader(ShardBatches(self.todo(rank, world), self.num, self.shard_size, self.batch_size, self.seed),
                          batch_size=None)

    def test_dataloader(self) -> DataLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        if self.num < world:  # a rank without samples would leave the others waiting in the metrics' sync
            raise ConfigError(f"data.num: {self.num} sample(s) on {world} processes; use at most {self.num} device(s)")
        return DataLoader(RankSlice(self.num, self.batch_size, self.seed, rank, world), batch_size=None)

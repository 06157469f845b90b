"""One way to load a split of images: shuffled for training, sliced across ranks without padding for evaluation."""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch.utils.data import DataLoader, Dataset


def rank_seed(seed: int, rank: int) -> int:
    """The seed of process ``rank``'s own stream (shuffling, augmentation) in a run seeded ``seed``."""
    return seed * 1_000_003 + rank


def split_loader(dataset: Dataset, batch_size: int, shuffle: bool, rank: int, world: int, num_workers: int,
                 seed: int, too_few: Callable[[int], Exception],
                 worker_init_fn: Optional[Callable[[int], None]] = None) -> DataLoader:
    """A split's DataLoader. ``shuffle``: training order from the stream :func:`rank_seed` (seed, rank).
    Evaluation on ``world`` > 1 processes: rank ``rank`` gets every ``world``-th item, unpadded (Lightning's
    default DistributedSampler repeats items so that every rank gets as many, and evaluation would count
    those twice); ``too_few(n)`` is raised, on every rank alike, when the split has fewer items than processes."""
    sampler = None
    if not shuffle and world > 1:
        if len(dataset) < world:
            raise too_few(len(dataset))
        from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler

        sampler = UnrepeatedDistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler, num_workers=num_workers,
                      persistent_workers=num_workers > 0, worker_init_fn=worker_init_fn if num_workers > 0 else None,
                      generator=torch.Generator().manual_seed(rank_seed(seed, rank)),
                      pin_memory=torch.cuda.is_available())

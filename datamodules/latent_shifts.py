"""Training triples for the unsupervised method: latents z, direction indices k, shifts eps.

Nothing is stored: every batch is drawn afresh from seeded generators. Training streams are
disjoint across DDP ranks and dataloader workers (seeded by seed, rank, worker, epoch and a
pass counter); the validation set is one fixed draw that every rank slices ``rank::world_size``,
so validation metrics are the same on 1 or N processes. For a class-conditional generator the model
sets ``classes`` (the chosen class ids) in its ``setup``, and every triple gets a class drawn from the
same stream after it (``(z, k, eps, classes)``); unconditional streams are unchanged.
"""

from __future__ import annotations

import math
from typing import Iterator, Optional, Sequence

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from latentnav.errors import ConfigError
from latentnav.lightning_modules.conditional import draw_classes


def draw(n: int, latent_dim: int, num_directions: int, shift_range: float, shift_floor: float,
         generator: torch.Generator, classes: Optional[Sequence[int]] = None) -> tuple[torch.Tensor, ...]:
    """``n`` triples: z (n, d) ~ N(0, I), k (n,) uniform in [0, K), eps (n,) with floor <= |eps| <= range;
    with ``classes`` (a conditional generator's chosen ids) a fourth tensor, (n,) ids drawn uniformly from them."""
    z = torch.randn(n, latent_dim, generator=generator)
    k = torch.randint(num_directions, (n,), generator=generator)
    magnitude = shift_floor + (shift_range - shift_floor) * torch.rand(n, generator=generator)
    sign = torch.randint(2, (n,), generator=generator) * 2 - 1
    if classes is None:
        return z, k, magnitude * sign
    return z, k, magnitude * sign, draw_classes(classes, n, generator)


class _Stream(IterableDataset):
    def __init__(self, dm: "LatentShiftsDataModule", batches: int, seed: int, rank: int, world_size: int,
                 fixed: bool) -> None:
        self.dm, self.batches, self.seed, self.rank, self.world_size, self.fixed = dm, batches, seed, rank, world_size, fixed
        self.passes = 0

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator:
        dm = self.dm
        if self.fixed:  # one draw of num_val triples, the same for any world size; this rank's slice
            g = torch.Generator().manual_seed(self.seed)
            drawn = draw(dm.num_val, dm.latent_dim, dm.num_directions, dm.shift_range, dm.shift_floor, g, dm.classes)
            mine = slice(self.rank, None, self.world_size)
            yield from zip(*(t[mine].split(dm.batch_size) for t in drawn))
            return
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        # The epoch makes a resumed run draw new triples instead of replaying epoch 0's.
        epoch = getattr(dm.trainer, "current_epoch", 0) if dm.trainer is not None else 0
        g = torch.Generator().manual_seed(hash((self.seed, self.rank, worker, epoch, self.passes)) & (2**63 - 1))
        self.passes += 1
        for _ in range(worker, self.batches, workers):
            yield draw(dm.batch_size, dm.latent_dim, dm.num_directions, dm.shift_range, dm.shift_floor, g,
                       dm.classes)


class LatentShiftsDataModule(pl.LightningDataModule):
    """Batches ``(z (B, d), k (B,) long, eps (B,))`` for :class:`UnsupervisedDirections`.

    Args:
        latent_dim: size of z (the generator's, checked by the model).
        num_directions: K, the number of directions k is drawn from.
        shift_range, shift_floor: eps is uniform in [-range, -floor] U [floor, range]
            (the paper: range 6, floor 0.5).
        batch_size: per process.
        steps_per_epoch: training batches per epoch and process.
        num_val: validation triples in all (split across processes).
        seed: base seed of the training streams and the validation draw.
    ``classes``: None, or (set by a class-conditional generator's model in its ``setup``) the class ids a
    fourth batch element is drawn from.
    """

    def __init__(self, latent_dim: int = 64, num_directions: int = 16, shift_range: float = 6.0,
                 shift_floor: float = 0.5, batch_size: int = 32, steps_per_epoch: int = 500, num_val: int = 1024,
                 seed: int = 0) -> None:
        super().__init__()
        if num_val < 1 or batch_size < 1 or steps_per_epoch < 1:
            raise ConfigError("data.num_val, data.batch_size and data.steps_per_epoch must be at least 1")
        if not 0 <= shift_floor < shift_range:
            raise ConfigError(f"data.shift_floor must be in [0, shift_range={shift_range}), got {shift_floor}")
        self.latent_dim, self.num_directions = latent_dim, num_directions
        self.shift_range, self.shift_floor = shift_range, shift_floor
        self.batch_size, self.steps_per_epoch, self.num_val, self.seed = batch_size, steps_per_epoch, num_val, seed
        self.classes: Optional[tuple[int, ...]] = None

    def _placement(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        rank, world = self._placement()
        return DataLoader(_Stream(self, self.steps_per_epoch, self.seed, rank, world, fixed=False), batch_size=None)

    def val_dataloader(self) -> DataLoader:
        rank, world = self._placement()
        batches = math.ceil(len(range(rank, self.num_val, world)) / self.batch_size)
        return DataLoader(_Stream(self, batches, self.seed + 1_000_003, rank, world, fixed=True), batch_size=None)

"""Demo faces with their nuisance factors: batches for the nuisance regressor.

Batches are ``(images, factors)``: images float32 (B, 3, S, S) in [-1, 1], exactly as the CelebA
reader serves the demo faces (``uint8 / 127.5 - 1``: the range a generator produces), and factors
float32 (B, 8) in the renderer's own units, columns :data:`~latentnav.datamodules.demo_faces.NUISANCE_FACTORS`
(face position ``cx``, ``cy`` and size ``scale``, ``skin`` tone, ``background_r/g/b``, ``gradient``).

Nothing is written to disk: each split is rendered into memory (uint8) when a stage first needs it,
from a seed of its own derived from ``render_seed`` (:func:`split_seed`), so train, val and test never
share a face and every process renders the same faces. Training order is shuffled from ``seed`` and
the rank (Lightning's distributed sampler shards it under DDP); validation and test are sharded
without padding, so their metrics count every face once on 1 or N processes.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from latentnav.datamodules.demo_faces import NUISANCE_FACTORS, render_with_nuisance
from latentnav.datamodules.loaders import split_loader
from latentnav.errors import ConfigError

SPLITS = ("train", "val", "test")


def split_seed(render_seed: int, split: str) -> int:
    """The renderer's seed for ``split`` of ``render_seed``: distinct splits and distinct render seeds
    never share a stream (unlike ``render_seed + 1``, which is the next seed's train split)."""
    return int(np.random.SeedSequence([render_seed, SPLITS.index(split)]).generate_state(1, np.uint64)[0])


class NuisanceFaces(Dataset):
    """Rendered faces held as uint8 (N, 3, S, S) with their factors float32 (N, 8)."""

    def __init__(self, images: np.ndarray, factors: np.ndarray) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        self.factors = torch.from_numpy(np.asarray(factors, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index].float().div_(127.5).sub_(1.0), self.factors[index]


class DemoNuisanceDataModule(pl.LightningDataModule):
    """Demo faces and their continuous nuisance factors, rendered on first use.

    Args:
        num_train, num_val, num_test: faces per split.
        render_seed: seed of the renderer; each split draws from its own :func:`split_seed`.
        image_size: side in pixels (the demo's 32 by default).
        batch_size: per process (per GPU under DDP).
        num_workers: DataLoader worker processes per rank.
        seed: seeds the training order; each DDP rank derives its own stream from it.
    """

    def __init__(
        self,
        num_train: int = 32000,
        num_val: int = 2000,
        num_test: int = 2000,
        render_seed: int = 0,
        image_size: int = 32,
        batch_size: int = 128,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for field, value in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test),
                             ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"data.{field}: expected a positive integer, got {value!r}")
        if isinstance(render_seed, bool) or not isinstance(render_seed, int) or render_seed < 0:
            raise ConfigError(f"data.render_seed: expected an integer >= 0, got {render_seed!r}")
        if image_size < 16:
            raise ConfigError(f"data.image_size: the demo renderer needs at least 16 pixels, got {image_size}")
        if num_workers < 0:
            raise ConfigError(f"data.num_workers: expected 0 or more, got {num_workers}")
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.render_seed = render_seed
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.splits: dict[str, NuisanceFaces] = {}

    @property
    def factor_names(self) -> list[str]:
        """The factor columns, in order."""
        return list(NUISANCE_FACTORS)

    def render(self, split: str) -> NuisanceFaces:
        """``split``'s faces (rendered on the first call)."""
        if split not in self.splits:
            images, _, factors = render_with_nuisance(self.sizes[split], seed=split_seed(self.render_seed, split),
                                                      image_size=self.image_size)
            self.splits[split] = NuisanceFaces(images, factors)
        return self.splits[split]

    def setup(self, stage: Optional[str] = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage, SPLITS):
            self.render(split)

    def factor_statistics(self) -> tuple[list[float], list[float]]:
        """Per-factor mean and standard deviation over the training split (the regressor's standardisation)."""
        factors = self.render("train").factors.double()
        std = factors.std(0) if len(factors) > 1 else torch.ones(factors.shape[1], dtype=torch.float64)
        return factors.mean(0).tolist(), std.clamp_min(1e-6).tolist()

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        rank, world = self._rank_world()
        return split_loader(self.render(split), self.batch_size, shuffle, rank, world, self.num_workers, self.seed,
                            lambda n: ConfigError(f"data.num_{split}: {n} face(s) for {world} processes; every "
                                                  "process needs one"))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

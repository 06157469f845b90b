"""CelebA (or anything in its on-disk layout) as a LightningDataModule.

Expected folder, as distributed::

    root/
      img_align_celeba/000001.jpg ...     178x218 aligned faces (any image format PIL reads)
      list_attr_celeba.txt
      list_eval_partition.txt

Batches are ``(images, targets)``: images float32 (B, 3, image_size, image_size) in
[-1, 1] (the range a GAN generator produces, so a classifier trained here applies to
G(z) directly), targets float32 (B, K) in {0, 1}, columns in ``attribute_names`` order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, Sequence, Union

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from latentnav.datamodules.celeba_files import (
    AttributeTable,
    check_images,
    read_attribute_file,
    read_partition_file,
    split_indices,
)
from latentnav.datamodules.loaders import rank_seed, split_loader
from latentnav.errors import ConfigError, DataFormatError


class CelebAAttributes(Dataset):
    """Images of one split with their attribute targets.

    Crop: a centred square of side ``crop_size`` (the shorter side when None), then a
    resize to ``image_size``. Horizontal flips, when on, come from the dataset's own
    generator, which :meth:`reseed` sets per rank and worker.
    """

    def __init__(
        self,
        image_dir: Path,
        filenames: Sequence[str],
        targets: np.ndarray,
        image_size: int,
        crop_size: Optional[int],
        hflip: bool = False,
    ) -> None:
        self.image_dir = Path(image_dir)
        self.filenames = list(filenames)
        self.targets = torch.from_numpy((np.asarray(targets) > 0).astype(np.float32))
        self.image_size = image_size
        self.crop_size = crop_size
        self.hflip = hflip
        self._rng = torch.Generator().manual_seed(0)

    def reseed(self, seed: int) -> None:
        self._rng.manual_seed(seed)

    def __len__(self) -> int:
        return len(self.filenames)

    def load_image(self, index: int) -> torch.Tensor:
        """Image ``index`` as float32 (3, image_size, image_size) in [-1, 1]."""
        from latentnav.images import load_square_image

        return load_square_image(self.image_dir / self.filenames[index], self.image_size, self.crop_size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.load_image(index)
        if self.hflip and torch.rand((), generator=self._rng) < 0.5:
            image = image.flip(-1)
        return image, self.targets[index]


def _verify_mode(value: object) -> str:
    """``verify_images`` as "off", "header" or "decode"."""
    if isinstance(value, bool):
        return "header" if value else "off"
    if value in ("off", "header", "decode"):
        return value
    raise ConfigError(f"data.verify_images: expected true, false, off, header or decode, got {value!r}")


def _reseed_worker(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    dataset = info.dataset
    # Derived from the torch seed the DataLoader gives each worker, which differs by rank
    # (through the dataloader's generator below) and by worker.
    dataset.reseed(int(info.seed % (2**63)))


class CelebADataModule(pl.LightningDataModule):
    """CelebA attributes from ``root`` in the official train/val/test split.

    Args:
        root: folder holding ``img_align_celeba/`` and the two list files.
        attributes: attribute names to predict, in order; None takes every column of the file.
        image_size: side of the square images returned, in pixels.
        crop_size: side of the centred square cropped before resizing; None = the shorter side.
            178 keeps the whole width of CelebA's 178x218 aligned images.
        batch_size: per process (per GPU under DDP).
        num_workers: DataLoader worker processes per rank.
        hflip: random horizontal flips on the training split.
        seed: seeds shuffling and flips; each DDP rank and worker derives its own stream from it.
        verify_images: checks on the images in :meth:`setup`, before training (the list files
            are always checked). True or "header" (default): every listed image exists, its
            header reads, and it is at least ``crop_size`` on each side (about 50 us an image).
            "decode": the same, and every image is decoded in full, so a corrupt or truncated
            body fails here instead of midway through training; costs roughly one epoch of
            image decoding. False or "off": no image checks.
    """

    def __init__(
        self,
        root: str,
        attributes: Optional[list[str]] = None,
        image_size: int = 64,
        crop_size: Optional[int] = 178,
        batch_size: int = 64,
        num_workers: int = 0,
        hflip: bool = True,
        seed: int = 0,
        verify_images: Union[bool, Literal["off", "header", "decode"]] = True,
    ) -> None:
        super().__init__()
        if image_size < 8:
            raise ConfigError(f"data.image_size: expected at least 8 pixels, got {image_size}")
        if crop_size is not None and crop_size < 1:
            raise ConfigError(f"data.crop_size: expected a positive number of pixels or null, got {crop_size}")
        if batch_size < 1:
            raise ConfigError(f"data.batch_size: expected a positive integer, got {batch_size}")
        self.root = Path(root)
        self.attributes = list(attributes) if attributes is not None else None
        self.image_size = image_size
        self.crop_size = crop_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.hflip = hflip
        self.seed = seed
        # Normalised to "off" / "header" / "decode"; True and False are kept for older configs.
        self.verify_images = _verify_mode(verify_images)
        self.table: Optional[AttributeTable] = None
        self.splits: dict[str, CelebAAttributes] = {}

    @property
    def image_dir(self) -> Path:
        return self.root / "img_align_celeba"

    @property
    def attribute_names(self) -> list[str]:
        """Target columns, in order (known after :meth:`setup`, or from ``attributes``)."""
        if self.table is not None:
            return list(self.table.names)
        if self.attributes is None:
            raise RuntimeError("attribute_names: call setup() first or pass attributes")
        return list(self.attributes)

    def setup(self, stage: Optional[str] = None) -> None:
        if self.table is not None:
            return
        if not self.root.is_dir():
            raise DataFormatError(f"data.root: folder {self.root} not found")
        attr_path = self.root / "list_attr_celeba.txt"
        part_path = self.root / "list_eval_partition.txt"
        table = read_attribute_file(attr_path).select(self.attributes, source=str(attr_path))
        rows = split_indices(table, read_partition_file(part_path), part_path, attr_path)
        if self.verify_images != "off":
            sizes = check_images(self.image_dir, table.filenames, decode=self.verify_images == "decode")
            self._check_crop(table.filenames, sizes)
        self.table = table
        for split, index in rows.items():
            self.splits[split] = CelebAAttributes(
                self.image_dir,
                [table.filenames[i] for i in index],
                table.values[index],
                self.image_size,
                self.crop_size,
                hflip=self.hflip and split == "train",
            )

    def _check_crop(self, filenames: Sequence[str], sizes: Sequence[tuple[int, int]]) -> None:
        """Every image must hold the centred crop: a smaller one would stop training when reached."""
        if self.crop_size is None:
            return
        small = [i for i, (w, h) in enumerate(sizes) if min(w, h) < self.crop_size]
        if small:
            w, h = sizes[small[0]]
            raise ConfigError(
                f"{len(small)} of {len(sizes)} images smaller than data.crop_size {self.crop_size}, "
                f"first {self.image_dir / filenames[small[0]]} is {w}x{h}; "
                "lower data.crop_size or remove those images from the list files"
            )

    def _rank(self) -> int:
        return self.trainer.global_rank if self.trainer is not None else 0

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.splits[split]
        if len(dataset) == 0:
            raise DataFormatError(f"{self.root / 'list_eval_partition.txt'}: the {split} split is empty")
        rank, world = self._rank(), (self.trainer.world_size if self.trainer is not None else 1)
        dataset.reseed(rank_seed(self.seed, rank))  # the main-process flips: one stream per (seed, rank)
        return split_loader(dataset, self.batch_size, shuffle, rank, world, self.num_workers, self.seed,
                            lambda n: DataFormatError(f"{self.root / 'list_eval_partition.txt'}: the {split} split has "
                                                      f"{n} image(s), fewer than the {world} processes; every process "
                                                      "needs one"),
                            worker_init_fn=_reseed_worker)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


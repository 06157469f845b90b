"""A user's image files as ``predict`` batches: rank slices (no padding), loaded and cropped per batch."""

from __future__ import annotations

import os
import sys
from typing import Callable, Optional, Sequence

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from latentnav.errors import ConfigError, DataFormatError
from latentnav.images import UnreadableImage, list_images, load_square_image


STRICT = "--strict stops at the first file it would otherwise skip"


class ImageBatches(IterableDataset):
    """Batches ``{"indices": (b,) int64, "images": (b, 3, size, size) in [-1, 1]}``: of the files not in
    ``skip`` (already done), those at positions ``rank, rank + W, ...``."""

    def __init__(self, files: list, size: int, crop_size: Optional[int], batch_size: int, rank: int,
                 world_size: int, skip: frozenset = frozenset()) -> None:
        self.files, self.size, self.crop_size, self.batch_size = files, size, crop_size, batch_size
        remaining = torch.tensor([i for i in range(len(files)) if i not in skip], dtype=torch.long)
        self.indices = remaining[rank::world_size]

    def __iter__(self):
        for chunk in self.indices.split(self.batch_size) if len(self.indices) else ():  # an empty split is one empty chunk
            yield {"indices": chunk,
                   "images": torch.stack([load_square_image(self.files[i], self.size, self.crop_size) for i in chunk])}

    def __len__(self) -> int:
        # At least 1: a loop of length 0 is skipped whole, end hooks included, and a rank with nothing left
        # to do (a resumed run) must still reach the writer's barrier with the others.
        return max(1, -(-len(self.indices) // self.batch_size))


class ImageFilesDataModule(pl.LightningDataModule):
    """Image files (or folders of them, in name order) cropped to a centred square and resized.

    Args:
        images: files or folders.
        size: side in pixels (the generator's resolution).
        crop_size: side of the centred square cut before resizing (CelebA's reader: 178); None = the
            shorter side.
        batch_size: images per batch.
        done: called when the loader is made (after the writer's ``setup``): the indices already done, left out.
        strict: stop at the first file that would be skipped (one line naming it) instead of skipping it.
    Every file is opened once here, before any work: one that cannot be used (unreadable, a folder's
    non-image file, smaller than ``crop_size``) is left out of :attr:`files` and listed in :attr:`skipped`
    as ``(path, reason)``, reported as ``latentnav: skipped PATH: reason`` (stderr, rank 0) when the loop
    sets up; with ``strict`` it is a ``DataFormatError`` line instead. No readable image left is one line.
    Readable images of any mode are converted (:func:`latentnav.images.to_rgb`: 16-bit scaled, grey,
    transparency on black, palettes, a GIF's first frame).
    """

    def __init__(self, images: Sequence[str | os.PathLike], size: int, crop_size: Optional[int] = None,
                 batch_size: int = 8, done: Optional[Callable[[], set]] = None, strict: bool = False) -> None:
        super().__init__()
        if batch_size < 1 or size < 1:
            raise ConfigError(f"images: batch_size and size must be positive, got {batch_size} and {size}")
        if crop_size is not None and crop_size < 1:
            raise ConfigError(f"crop_size: expected a positive number of pixels, got {crop_size}")
        self.skipped: list[tuple] = []
        listed = list_images(images, skipped=self.skipped)
        if strict and self.skipped:
            path, reason = self.skipped[0]
            raise DataFormatError(f"{path}: {reason}; {STRICT}")
        self.size, self.crop_size, self.batch_size, self.done = size, crop_size, batch_size, done
        self.files = []
        for f in listed:  # now, with the file's name, rather than mid-run
            try:
                load_square_image(f, 1, crop_size)
            except UnreadableImage as e:
                if strict:
                    raise DataFormatError(f"{e}; {STRICT}") from None
                self.skipped.append((e.path, e.reason))
            else:
                self.files.append(f)
        if not self.files:
            first, why = self.skipped[0]
            raise DataFormatError(f"images: no readable image; {len(self.skipped)} file(s) skipped, the first "
                                  f"{first}: {why}")

    def setup(self, stage: str) -> None:
        if self.trainer is None or self.trainer.is_global_zero:
            self.report_skipped()

    def report_skipped(self) -> None:
        """One line a skipped file on stderr: ``latentnav: skipped PATH: reason``."""
        for path, reason in self.skipped:
            print(f"latentnav: skipped {path}: {reason}", file=sys.stderr, flush=True)

    def predict_dataloader(self) -> DataLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        if len(self.files) < world:  # every rank decides alike: a rank without images would leave the others waiting
            raise ConfigError(f"images: {len(self.files)} image(s) on {world} processes; use at most "
                              f"{len(self.files)} device(s)")
        skip = frozenset(self.done() if self.done is not None else ())
        return DataLoader(ImageBatches(self.files, self.size, self.crop_size, self.batch_size, rank, world, skip),
                          batch_size=None)

"""Generator quality as a Lightning ``test`` loop: devices, ranks and precision from the Trainer.

The batches are latent indices (``LatentIndicesDataModule.test_dataloader``: rank r of W gets
r, r + W, ..., never padded). For each index i the frozen classifier judges the generator's image
of latent ``latents_at([i], seed)`` and, when i < len(real_images), real image i; both
:class:`AttributeStatistics` are sums synced across ranks, so 1 and N processes give the same figures.
"""

from __future__ import annotations

from typing import Optional

import pytorch_lightning as pl
import torch

from latentnav.generators.base import check_finite
from latentnav.lightning_modules.generator_quality import AttributeStatistics, quality_summary


class QualityEvaluation(pl.LightningModule):
    """Args:
        generator: a loaded, frozen ``FrozenGenerator``.
        annotator: a loaded, frozen ``Annotator``: images (B, 3, R, R) in [-1, 1] -> probabilities (B, A).
        real_images: uint8 (N, R, R, 3) on the CPU, the reference for the frequency gap; kept out of the
            module's state (moved to the device a batch at a time).

    After ``trainer.test``: ``self.result`` = :func:`quality_summary`'s flat dict, on every rank.
    """

    def __init__(self, generator, annotator, real_images: torch.Tensor) -> None:
        super().__init__()
        if real_images.dtype != torch.uint8 or real_images.ndim != 4 or real_images.shape[-1] != 3:
            raise ValueError(f"QualityEvaluation: real_images must be uint8 (N, R, R, 3), got "
                             f"{real_images.dtype} {tuple(real_images.shape)}")
        self.generator, self.annotator = generator, annotator
        self.real_images = real_images
        k = len(annotator.attributes)
        self.fake, self.real = AttributeStatistics(k), AttributeStatistics(k)
        self.result: Optional[dict[str, float]] = None

    @torch.no_grad()
    def test_step(self, batch: dict, batch_idx: int) -> None:
        indices = batch["indices"]
        z = self.generator.latents_at(indices, int(batch["seed"])).to(self.device)
        images = self.generator.synthesize(z, classes=self.generator.classes_at(indices))
        check_finite(images, indices, "generator quality")
        self.fake.update(self.annotator(images).float())
        rows = indices.cpu()  # the Trainer moved the batch to its device; the real images stay on the CPU
        real = self.real_images[rows[rows < len(self.real_images)]]
        if len(real):
            self.real.update(self.annotator(real.to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1).float())

    def on_test_epoch_end(self) -> None:
        # Every rank computes (the sync is a collective), so every rank holds the result.
        self.result = quality_summary(self.fake.compute(), self.real.compute()["frequency"],
                                      list(self.annotator.attributes))

"""The annotator's probabilities for latents 0..N-1 of a seeded stream, as a Trainer ``test`` loop.

Rank r of W judges indices r, r + W, ...; the (index, probabilities) rows are gathered on every rank and put
back in index order, so 1 or N processes return the same table. The latents themselves are not gathered:
latent i is ``latents_at([i], seed)`` in any space, wherever it is needed.
"""

from __future__ import annotations

from typing import Optional

import pytorch_lightning as pl
import torch
from torchmetrics.aggregation import CatMetric

from latentnav.generators.base import check_finite


class LabelledLatents(pl.LightningModule):
    """Args:
        generator: a loaded, frozen ``FrozenGenerator``.
        annotator: a loaded ``Annotator``: images (B, 3, R, R) in [-1, 1] -> probabilities (B, A) in [0, 1].
        truncation: psi of the rendered images (1: none).

    After ``trainer.test``: ``self.result`` = {"indices" (N,) int64 sorted, "probabilities" (N, A) float32}, on
    every rank."""

    def __init__(self, generator, annotator, truncation: float = 1.0) -> None:
        super().__init__()
        self.generator, self.annotator, self.truncation = generator, annotator, float(truncation)
        self.rows, self.probabilities = CatMetric(), CatMetric()
        self.result: Optional[dict] = None

    @torch.no_grad()
    def test_step(self, batch: dict, batch_idx: int) -> None:
        indices = batch["indices"]
        z = self.generator.latents_at(indices.cpu(), int(batch["seed"])).to(self.device)
        images = self.generator.synthesize(z, truncation=self.truncation, classes=self.generator.classes_at(indices))
        check_finite(images, indices, "labelled latents")
        self.rows.update(indices.to(self.device).double())
        self.probabilities.update(self.annotator(images.float()).float())

    def on_test_epoch_end(self) -> None:
        rows = self.rows.compute().cpu().reshape(-1).long()
        probabilities = self.probabilities.compute().cpu().reshape(len(rows), -1)
        order = rows.argsort()
        self.result = {"indices": rows[order], "probabilities": probabilities[order]}

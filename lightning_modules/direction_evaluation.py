"""Measuring directions over many latents as a Lightning ``test`` loop (devices, ranks, precision from the Trainer).

Used by the comparison command: one pass names every direction by its first-order effect
(:class:`AttributeChange` at +alpha and -alpha), a second measures the oriented directions at
equal target success (:class:`latentnav.lightning_modules.edit_metrics.EditEffect`). The batches are
latent indices (``latentnav.datamodules.latent_indices.LatentIndicesDataModule.test_dataloader``: rank r
of W gets indices r, r + W, ..., never padded), latent i = ``generator.latents_at([i], seed)``,
and every metric is a sum synced across ranks: 1 and N processes give the same numbers.
"""

from __future__ import annotations

from typing import Literal, Optional, Sequence

import pytorch_lightning as pl
import torch
from torchmetrics import Metric

from latentnav.lightning_modules.edit_metrics import EditEffect


class AttributeChange(Metric):
    """Sums of the change of every attribute's probability per direction: states (K, A) float64, synced by sum.

    ``update(direction, p0, p1)`` with probabilities (B, A); ``compute()`` -> mean change (K, A)."""

    full_state_update = False

    def __init__(self, num_directions: int, num_attributes: int) -> None:
        super().__init__()
        self.add_state("total", torch.zeros(num_directions, num_attributes, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(num_directions, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, direction: int, p0: torch.Tensor, p1: torch.Tensor) -> None:
        self.total[direction] += (p1.double() - p0.double()).sum(0)
        self.count[direction] += len(p0)

    def compute(self) -> torch.Tensor:
        return self.total / self.count.clamp_min(1)[:, None]


class DirectionEvaluation(pl.LightningModule):
    """Edits latents along unit ``directions`` (K, d) and judges them with the frozen classifier.

    Args:
        generator: a loaded, frozen ``FrozenGenerator`` (loaded as the directions' run did).
        annotator: a loaded, frozen ``Annotator``; probabilities (B, A) in [0, 1].
        directions: (K, d) rows, normalised here.
        space: latent space of the directions.
        mode: ``naming`` (mean change at +/- ``naming_alpha``: ``self.result`` = {"plus", "minus"}
            (K, A) each) or ``effect`` (``EditEffect`` over ``alphas`` for ``targets``: its compute()).
        judge: in ``effect`` mode, a second, held-out classifier that scores the same edited images
            (``self.judge_result``: its own ``EditEffect``, at *its* equal target success);
            ``judge_columns`` picks and orders its columns as the annotator's attributes.
        replicates, bootstrap_seed: Poisson-bootstrap replicates of the ``effect`` sums (weights from the
            latent indices: every method measured on the same latents gets the same, paired, weights).
    """

    def __init__(self, generator, annotator, directions: torch.Tensor, space: str = "z",
                 mode: Literal["naming", "effect"] = "effect", naming_alpha: float = 2.0,
                 alphas: Sequence[float] = (0.0, 1.0), targets: Optional[Sequence[int]] = None,
                 judge=None, judge_columns: Optional[Sequence[int]] = None, replicates: int = 0,
                 bootstrap_seed: int = 0) -> None:
        super().__init__()
        self.generator, self.annotator, self.judge = generator, annotator, judge
        self.judge_columns = list(judge_columns) if judge_columns is not None else None
        self.register_buffer("directions", torch.nn.functional.normalize(directions.float(), dim=1), persistent=False)
        self.space, self.mode, self.naming_alpha, self.alphas = space, mode, naming_alpha, list(alphas)
        k, a = len(directions), len(annotator.attributes)
        if mode == "naming":
            self.plus, self.minus = AttributeChange(k, a), AttributeChange(k, a)
        else:
            if targets is None or len(targets) != k:
                raise ValueError("DirectionEvaluation: mode 'effect' needs one target attribute per direction")
            self.effect = EditEffect(self.alphas, list(targets), a, replicates, bootstrap_seed)
            if judge is not None:
                self.judge_effect = EditEffect(self.alphas, list(targets), a, replicates, bootstrap_seed)
        self.result: Optional[dict] = None
        self.judge_result: Optional[dict] = None

    def _probs(self, latents: torch.Tensor) -> torch.Tensor:
        return self.annotator(self.generator.synthesize(latents, self.space)).float()

    def _both(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The annotator's and the judge's probabilities (B, A) of the same images."""
        images = self.generator.synthesize(latents, self.space)
        judged = self.judge(images).float()
        return self.annotator(images).float(), judged[:, self.judge_columns] if self.judge_columns else judged

    @torch.no_grad()
    def test_step(self, batch: dict, batch_idx: int) -> None:
        latents = self.generator.latents_at(batch["indices"], int(batch["seed"]), self.space).to(self.device)
        if self.mode == "effect" and self.judge is not None:
            p0, q0 = self._both(latents)
            for i, d in enumerate(self.directions):
                for a, alpha in enumerate(self.alphas):
                    p1, q1 = (p0, q0) if alpha == 0 else self._both(latents + alpha * d.view_as(latents[0]))
                    self.effect.update(i, a, p0, p1, batch["indices"])
                    self.judge_effect.update(i, a, q0, q1, batch["indices"])
            return
        p0 = self._probs(latents)
        for i, d in enumerate(self.directions):
            d = d.view_as(latents[0])
            if self.mode == "naming":
                self.plus.update(i, p0, self._probs(latents + self.naming_alpha * d))
                self.minus.update(i, p0, self._probs(latents - self.naming_alpha * d))
                continue
            for a, alpha in enumerate(self.alphas):
                self.effect.update(i, a, p0, p0 if alpha == 0 else self._probs(latents + alpha * d), batch["indices"])

    def on_test_epoch_end(self) -> None:
        # Every rank computes (the metrics' sync is a collective), so every rank holds the result.
        if self.mode == "naming":
            self.result = {"plus": self.plus.compute().cpu(), "minus": self.minus.compute().cpu()}
        else:
            self.result = _to_cpu(self.effect.compute())
            if self.judge is not None:
                self.judge_result = _to_cpu(self.judge_effect.compute())


def _to_cpu(result: dict) -> dict:
    return {k: [_to_cpu(r) for r in v] if k == "replicates" else v.cpu() for k, v in result.items()}

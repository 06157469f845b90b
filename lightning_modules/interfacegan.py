"""InterFaceGAN-style boundaries: one linear classifier per attribute on confidently labelled latents."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from latentnav.errors import ConfigError, TrainingDivergedError, check_attribute_columns, check_learning_rate
from latentnav.lightning_modules.linear_map import LinearMap


def conditional_direction(directions: torch.Tensor, target: int, keep: list[int]) -> torch.Tensor:
    """InterFaceGAN's conditional edit: direction ``target`` with the span of the ``keep`` directions
    projected out (so moving along it leaves those attributes' linear scores unchanged). (d,) unit."""
    from latentnav.lightning_modules.edit_metrics import project_out

    kept = sorted(set(keep) - {target})
    return project_out(directions[target].float()[None], directions[kept].float().T[None])[0]


class InterFaceGANBoundaries(pl.LightningModule):
    """Per-attribute logistic regression in latent space; the unit normals are the directions.

    Batches ``(latents (B, d), logits (B, K))`` from the annotated-latents datamodule (with
    ``target: logits``). A latent counts for attribute k only when the classifier is confident
    (probability below ``1 - confidence`` or above ``confidence``), as in InterFaceGAN, which
    trains on the most clearly positive and negative samples.
    """

    def __init__(self, attributes: list[str], latent_dim: int, confidence: float = 0.9, lr: float = 0.01,
                 weight_decay: float = 1e-4) -> None:
        super().__init__()
        check_learning_rate("model.lr", lr)
        self.save_hyperparameters()
        self.attributes = list(attributes)
        self.map = LinearMap(latent_dim, len(attributes))

    @property
    def method_name(self) -> str:
        return "InterFaceGAN boundaries"

    def directions(self) -> torch.Tensor:
        return self.map.directions()

    def _loss(self, batch) -> torch.Tensor:
        z, logits = batch
        p = torch.sigmoid(logits.float())
        conf = self.hparams.confidence
        mask = ((p > conf) | (p < 1 - conf)).float()
        bce = F.binary_cross_entropy_with_logits(self.map(z.float()), (p > 0.5).float(), reduction="none")
        return (bce * mask).sum() / mask.sum().clamp_min(1)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        if self.trainer.strategy.reduce_boolean_decision(not torch.isfinite(loss).item(), all=False):
            raise TrainingDivergedError(f"boundary loss is not finite at global step {self.global_step}; lower model.lr")
        self.log("train/bce", loss, prog_bar=True, batch_size=len(batch[0]))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self.log("val/bce", self._loss(batch), sync_dist=True, batch_size=len(batch[0]))

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        check_attribute_columns(self.attributes, datamodule)
        if getattr(datamodule, "target", "logits") != "logits":
            raise ConfigError("InterFaceGAN boundaries need the classifier's logits: set data.target: logits")

    def configure_optimizers(self):
        return torch.optim.AdamW(self.map.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

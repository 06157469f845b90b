"""Supervised edit directions: fit y = z Wᵀ + b to classifier scores with an orthogonality term."""

from __future__ import annotations

from typing import Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from latentnav.errors import ConfigError, TrainingDivergedError, check_attribute_columns, check_learning_rate
from latentnav.lightning_modules.linear_map import LinearMap


class SupervisedDirections(pl.LightningModule):
    """Loss = MSE(z Wᵀ + b, y) + ortho_weight * ‖W Wᵀ − I‖ (Frobenius, or its square).

    Batches are ``(latents (B, d), targets (B, K))``; targets are the classifier's logits or
    probabilities (the datamodule decides). ``standardize``: targets are centred and scaled
    per attribute with statistics of the first training batch, so that the MSE term has the
    same size whatever the target scale (logits here have a std of 5-11) and λ means the
    same thing across runs.

    Args:
        attributes: the K attribute names (rows of W).
        latent_dim: d, the size of the latents (``z``, or ``w`` for StyleGAN2).
        ortho_weight: λ; 0 fits the plain least-squares map.
        ortho_norm: ``frobenius`` (the paper's) or ``squared``.
        lr: Adam learning rate.
    """

    def __init__(
        self,
        attributes: list[str],
        latent_dim: int,
        ortho_weight: float = 1.0,
        ortho_norm: Literal["frobenius", "squared"] = "squared",
        standardize: bool = True,
        lr: float = 0.01,
    ) -> None:
        super().__init__()
        check_learning_rate("model.lr", lr)
        if ortho_norm not in ("frobenius", "squared"):
            raise ConfigError(f"model.ortho_norm: expected 'frobenius' or 'squared', got {ortho_norm!r}")
        self.save_hyperparameters()
        self.attributes = list(attributes)
        self.map = LinearMap(latent_dim, len(attributes))
        self.register_buffer("target_mean", torch.zeros(len(attributes)))
        self.register_buffer("target_std", torch.ones(len(attributes)))
        self.register_buffer("fitted_scale", torch.zeros((), dtype=torch.bool))

    @property
    def method_name(self) -> str:
        return f"linear map, lambda={self.hparams.ortho_weight:g} ({self.hparams.ortho_norm})"

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised attribute scores (B, K) predicted from latents (B, d)."""
        return self.map(z)

    def directions(self) -> torch.Tensor:
        """Unit edit directions, one row per attribute: (K, d)."""
        return self.map.directions()

    def _targets(self, y: torch.Tensor, fit: bool = False) -> torch.Tensor:
        if not self.hparams.standardize:
            return y
        if fit and not bool(self.fitted_scale):
            # First moments averaged over ranks (equal batch sizes): every process standardises
            # the same way, and as one process would with the whole global batch.
            moments = torch.stack([y.mean(0), y.pow(2).mean(0)])
            if self._trainer is not None:
                moments = self.trainer.strategy.reduce(moments, reduce_op="mean")
            mean, var = moments[0], (moments[1] - moments[0].pow(2)).clamp_min(0)
            self.target_mean.copy_(mean)
            self.target_std.copy_(var.sqrt().clamp_min(1e-6))
            self.fitted_scale.fill_(True)
        return (y - self.target_mean) / self.target_std

    def _losses(self, batch, fit: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        z, y = batch
        if z.shape[1] != self.hparams.latent_dim:
            raise ConfigError(f"latents have size {z.shape[1]}, but model.latent_dim is {self.hparams.latent_dim}")
        mse = F.mse_loss(self.map(z.float()), self._targets(y.float(), fit))
        ortho = self.map.orthogonality(squared=self.hparams.ortho_norm == "squared")
        return mse, ortho

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        mse, ortho = self._losses(batch, fit=True)
        loss = mse + self.hparams.ortho_weight * ortho
        if self.trainer.strategy.reduce_boolean_decision(not torch.isfinite(loss).item(), all=False):
            raise TrainingDivergedError(f"linear-map loss is not finite at global step {self.global_step}; lower model.lr")
        self.log_dict({"train/mse": mse, "train/ortho": ortho, "train/loss": loss}, prog_bar=True, batch_size=len(batch[0]))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        mse, ortho = self._losses(batch)
        self.log_dict({"val/mse": mse, "val/ortho": ortho}, sync_dist=True, batch_size=len(batch[0]))

    def on_validation_epoch_end(self) -> None:
        cos = self.directions() @ self.directions().T
        off = cos - torch.diag(torch.diag(cos))
        self.log("val/max_abs_cos", off.abs().max(), sync_dist=True)

    def setup(self, stage: str) -> None:
        check_attribute_columns(self.attributes, self.trainer.datamodule if self._trainer is not None else None)

    def configure_optimizers(self):
        return torch.optim.Adam(self.map.parameters(), lr=self.hparams.lr)


def planted_problem(n: int, latent_dim: int, num_attributes: int, seed: int = 0, noise: float = 0.01) -> tuple:
    """Synthetic (z, y) with y = z W*ᵀ + b* + noise; returns (z, y, W*, b*)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(num_attributes, latent_dim, generator=g)
    b = torch.randn(num_attributes, generator=g)
    z = torch.randn(n, latent_dim, generator=g)
    return z, z @ w.T + b + noise * torch.randn(n, num_attributes, generator=g), w, b


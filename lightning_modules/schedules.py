"""Optimiser and learning-rate schedule shared by the image models (classifier, nuisance regressor)."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch


def adamw_cosine(module: pl.LightningModule, lr: float, weight_decay: float):
    """AdamW with a cosine decay to 0 over the run's optimiser steps (per step), or plain AdamW when
    the run's length is unknown. ``configure_optimizers``'s return value."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    total = module.trainer.estimated_stepping_batches
    if not math.isfinite(total):
        return optimizer
    # A lambda of the current run's length: a resume with a larger max_steps stretches the
    # decay instead of restoring the old T_max (CosineAnnealingLR's state would).
    total = max(1, int(total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

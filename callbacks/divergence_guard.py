"""Stop a fit whose loss ran away, before it writes anything that looks like a result."""

from __future__ import annotations

import math
from typing import Any, Optional

import pytorch_lightning as pl
import torch

from latentnav.errors import ConfigError, TrainingDivergedError, check_positive


class DivergenceGuard(pl.Callback):
    """Raises :class:`TrainingDivergedError` (one line; the fit stops, no export is written) when the
    mean training loss of the last ``window`` steps exceeds ``factor`` times its reference: the loss
    of the run's first step, i.e. of the untrained model, before any optimiser step.

    The modules already stop on a NaN/inf loss; this catches the *finite* runaway (``lr 1e6`` gave a
    supervised loss of 1e28 and an unsupervised one of 4e10, both ending "successfully"). The
    reference is the untrained model's loss, not the first validation's nor an average over the first
    steps, because a run that diverges within its first steps (``lr 1e6`` does at step 2) would make
    its own garbage the yardstick. It is kept in the checkpoint,
    so a resumed run is judged against the same start. Losses are averaged over ranks (every rank
    reaches the same step), so all ranks decide alike. Modules whose ``training_step`` returns no
    loss (manual optimisation, e.g. the GAN) or whose loss is not positive are not judged.

    Args:
        factor: how many times the starting loss counts as a runaway (> 1; one batch's loss is noisy,
            hence the wide default).
        window: steps averaged per check (a check every ``window`` steps).
    """

    def __init__(self, factor: float = 100.0, window: int = 10) -> None:
        check_positive("divergence.window", window)
        if not (isinstance(factor, (int, float)) and factor > 1 and math.isfinite(factor)):
            raise ConfigError(f"divergence.factor: expected a finite number above 1, got {factor!r}")
        self.factor, self.window = float(factor), int(window)
        self.reference: Optional[float] = None
        self._losses: list[float] = []

    @staticmethod
    def _loss(outputs: Any) -> Optional[torch.Tensor]:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        return loss.detach().float() if isinstance(loss, torch.Tensor) and loss.numel() == 1 else None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        loss = self._loss(outputs)
        if loss is None:
            return
        self._losses.append(float(loss))
        needed = 1 if self.reference is None else self.window
        if len(self._losses) < needed:
            return
        mean = torch.tensor(sum(self._losses) / len(self._losses), device=pl_module.device)
        mean = float(trainer.strategy.reduce(mean, reduce_op="mean"))
        self._losses.clear()
        if self.reference is None:
            self.reference = mean if math.isfinite(mean) and mean > 0 else math.nan
            return
        if self.reference > 0 and not mean <= self.factor * self.reference:  # NaN counts as a runaway
            raise TrainingDivergedError(
                f"training loss ran away: mean {mean:.3g} over the last {self.window} steps (global step "
                f"{trainer.global_step}) is over {self.factor:g}x the first step's {self.reference:.3g}; "
                "lower the learning rate (model.lr*) and restart; no directions or exports were written")

    def state_dict(self) -> dict[str, Any]:
        return {"reference": self.reference}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.reference = state_dict.get("reference")


def check_final_validation(trainer: pl.Trainer, what: str = "directions") -> None:
    """Before a stable export: the run's last validation metrics must all be finite. One line otherwise
    (the exports of an earlier good run stay as they were)."""
    metrics = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(float(v)))
    if bad:
        raise TrainingDivergedError(f"final validation is not finite ({', '.join(bad)} = "
                                    f"{float(metrics[bad[0]])}); {what} not exported")

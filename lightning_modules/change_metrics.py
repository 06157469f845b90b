"""What else an edit changes, per direction and step: mean absolute change of any per-image quantity.

:class:`MeanAbsChange` sums ``|q(edited) - q(unedited)|`` for a vector quantity q (B, F) of each
image: the demo's nuisance factors read back by ``nuisance_regressor`` (in the factors' own units),
the pixels (mean |dpixel| in [-1, 1] units) or the judge's penultimate features (an image distance
for generators whose factors nobody knows). :func:`at_steps` reads the curves at each direction's
equal-success step. States are float64 sums (batches and DDP ranks add up), optionally with
Poisson-bootstrap replicates like :class:`latentnav.lightning_modules.edit_metrics.EditEffect`.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torchmetrics import Metric


class MeanAbsChange(Metric):
    """``update(direction, alpha_index, before (B, F), after (B, F), indices=None)``;
    ``compute()`` -> mean |after - before| of shape (1 + R, K, n_alpha, F) (0 = plain, then replicates)."""

    full_state_update = False

    def __init__(self, num_directions: int, num_alphas: int, width: int, replicates: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.replicates, self.seed = int(replicates), int(seed)
        r = 1 + self.replicates
        self.add_state("total", torch.zeros(r, num_directions, num_alphas, width, dtype=torch.float64),
                       dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(r, num_directions, num_alphas, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, direction: int, alpha_index: int, before: torch.Tensor, after: torch.Tensor,
               indices: Optional[torch.Tensor] = None) -> None:
        change = (after.detach().double() - before.detach().double()).abs().flatten(1)
        w = torch.ones(len(change), 1, dtype=torch.float64, device=change.device)
        if self.replicates:
            from latentnav.lightning_modules.bootstrap import poisson_weights

            if indices is None:
                raise ValueError("MeanAbsChange: with replicates, update() needs the samples' indices")
            boot = poisson_weights(torch.as_tensor(indices).reshape(-1).cpu(), self.replicates, self.seed)
            w = torch.cat([w, boot.to(device=change.device, dtype=torch.float64)], dim=1)
        self.total[:, direction, alpha_index] += w.T @ change
        self.count[:, direction, alpha_index] += w.sum(0)

    def compute(self) -> torch.Tensor:
        return self.total / self.count.clamp_min(1e-12)[..., None]


def at_steps(curves: torch.Tensor, alphas: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """``curves (K, n_alpha, F)`` read at ``steps (K,)`` by linear interpolation on ``alphas``
    -> (K, F); NaN for a NaN step (a direction that cannot flip) or one beyond the grid."""
    alphas = alphas.to(torch.float64)
    out = torch.full((curves.shape[0], curves.shape[-1]), math.nan, dtype=torch.float64)
    for k, step in enumerate(steps.tolist()):
        if step != step or step > float(alphas[-1]):
            continue
        j = int(torch.searchsorted(alphas, torch.tensor([step], dtype=torch.float64)).item())
        if j == 0:
            out[k] = curves[k, 0]
            continue
        t = (step - float(alphas[j - 1])) / float(alphas[j] - alphas[j - 1])
        out[k] = curves[k, j - 1] + t * (curves[k, j] - curves[k, j - 1])
    return out

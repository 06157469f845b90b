"""Perceptual path length (Karras et al. 2019, StyleGAN Sec. 4.1) of a latent space, as a Trainer ``test`` loop.

For pair i of a seeded stream: latents a = latent 2i, b = latent 2i + 1 and t_i ~ U(0, 1) (a pure function of
(seed, i), so 1 or N processes measure the same pairs). In ``z`` the path is the spherical interpolation (slerp)
of a and b, in ``w`` the linear one (lerp) of mapping(a) and mapping(b); the images at t and t + eps are judged
by a feature network (the held-out judge's penultimate features, unit-normalised per image: LPIPS's recipe with
the judge in place of VGG) and the pair's value is ``|f(G(p(t))) - f(G(p(t + eps)))|^2 / eps^2``. Endpoints are
not favoured: t covers the whole path ("full" PPL). As StyleGAN does, values below the 1st and above the 99th
percentile are dropped before averaging; the interval is a Poisson bootstrap over pairs (paired across spaces
measured with the same seed: replicate b reweights the same pairs in z and in w).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics.aggregation import CatMetric

from latentnav.errors import ConfigError
from latentnav.lightning_modules.bootstrap import percentile_interval, poisson_weights

SPACES = ("z", "w")


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of the directions of a and b (B, d) at t (B,), scaled to sqrt(d) (the typical
    norm of z ~ N(0, I)): StyleGAN's path in Z, whose mapping normalises z anyway."""
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    omega = torch.acos((a * b).sum(1).clamp(-1 + 1e-7, 1 - 1e-7))[:, None]
    t = t[:, None]
    path = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)
    return path * math.sqrt(a.shape[1])


def pair_positions(indices: torch.Tensor, seed: int) -> torch.Tensor:
    """t_i ~ U(0, 1) of pairs ``indices`` (B,), a pure function of (seed, i): float32 (B,) on the CPU."""
    return torch.tensor([np.random.default_rng((int(seed), int(i), 1)).random() for i in indices.tolist()],
                        dtype=torch.float32)


class PathLength(pl.LightningModule):
    """Args:
        generator: a loaded, frozen ``FrozenGenerator`` with ``space``.
        annotator: the feature network: a loaded ``Annotator`` (its ``features``: images -> (B, F)).
        space: ``z`` (slerp) or ``w`` (lerp).
        epsilon: the step along the path (StyleGAN: 1e-4).
        replicates: bootstrap replicates of the interval.
        truncation: psi of the rendered images (1: none).

    Batches: ``{"indices": pair ids, "seed"}`` (``LatentIndicesDataModule.test_dataloader``). After
    ``trainer.test``: ``self.result`` = {"ppl", "low", "high", "pairs", "kept", "replicates" (B,)}, on every rank.
    """

    def __init__(self, generator, annotator, space: str = "w", epsilon: float = 1e-4, replicates: int = 1000,
                 truncation: float = 1.0) -> None:
        super().__init__()
        if space not in SPACES or space not in generator.latent_spaces:
            raise ConfigError(f"space: path length is measured in z (slerp) or w (lerp) of a generator that has it; "
                              f"got {space!r} ({type(generator).__name__} has {', '.join(generator.latent_spaces)})")
        if not 0 < epsilon < 1:
            raise ConfigError(f"epsilon: expected a step in (0, 1), got {epsilon}")
        self.generator, self.annotator = generator, annotator
        self.space, self.epsilon, self.replicates, self.truncation = space, float(epsilon), int(replicates), float(truncation)
        self.values, self.pair_ids = CatMetric(), CatMetric()
        self.result: Optional[dict] = None

    def path_points(self, indices: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The latents at t and t + eps of pairs ``indices``: two (B, d) tensors in ``self.space``."""
        G = self.generator
        ends = G.latents_at(torch.stack([2 * indices, 2 * indices + 1], 1).reshape(-1).cpu(), seed).to(self.device)
        a, b = ends[0::2], ends[1::2]
        t = pair_positions(indices.cpu(), seed).to(self.device)
        if self.space == "z":
            return slerp(a, b, t), slerp(a, b, t + self.epsilon)
        a, b = G.to_space(a, "w"), G.to_space(b, "w")
        return torch.lerp(a, b, t[:, None]), torch.lerp(a, b, (t + self.epsilon)[:, None])

    @torch.no_grad()
    def test_step(self, batch: dict, batch_idx: int) -> None:
        indices = batch["indices"]
        p0, p1 = self.path_points(indices, int(batch["seed"]))
        images = self.generator.synthesize(torch.cat([p0, p1]), self.space, truncation=self.truncation).float()
        features = F.normalize(self.annotator.features(images).float(), dim=1)
        f0, f1 = features.chunk(2)
        self.values.update((f0 - f1).pow(2).sum(1).double() / self.epsilon**2)
        self.pair_ids.update(indices.to(self.device).double())

    def on_test_epoch_end(self) -> None:
        # Every rank computes (the gather is a collective), so every rank holds the result.
        values, ids = self.values.compute().cpu().reshape(-1), self.pair_ids.compute().cpu().reshape(-1).long()
        self.result = filtered_mean(values, ids, self.replicates)


def filtered_mean(values: torch.Tensor, ids: torch.Tensor, replicates: int = 1000, seed: int = 0) -> dict:
    """StyleGAN's PPL from per-pair values (N,): the mean of those within the 1st-99th percentile, with a
    Poisson-bootstrap interval over pairs (weights from the pair ids, so two spaces' replicates pair up)."""
    low_cut, high_cut = torch.quantile(values, torch.tensor([0.01, 0.99], dtype=values.dtype))
    keep = (values >= low_cut) & (values <= high_cut)
    kept, kept_ids = values[keep], ids[keep]
    w = poisson_weights(kept_ids, replicates, seed).double()  # (N, B)
    reps = (kept[:, None] * w).sum(0) / w.sum(0)
    low, high = percentile_interval(reps)
    return {"ppl": float(kept.mean()), "low": float(low), "high": float(high), "pairs": len(values),
            "kept": int(keep.sum()), "replicates": reps}

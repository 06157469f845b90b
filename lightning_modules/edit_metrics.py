"""How good are edit directions? Measured the same way for every method.

- :func:`cosine_matrix`: cosines between directions (K, K).
- :class:`EditEffect` (a torchmetrics ``Metric``, DDP-synced): moving along direction i by
  alpha on a grid, it accumulates the change of every attribute's probability and how often
  attribute i flips on among samples where it was off. ``compute`` compares methods at
  *equal target success*: for each direction it finds the step alpha_i at which attribute i
  flips on half of those samples (linear interpolation on the grid), and reports
  E[i, j] = mean change of attribute j's probability at alpha_i, the same mean over only the
  samples where attribute i was off (``effect_where_off``: the population the edit is for,
  used for purity), plus the flip rate reached at 2 alpha_i and 3 alpha_i. Directions that never reach a 0.5 flip rate on the grid get
  NaN rows and are listed in ``cannot_flip``.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torchmetrics import Metric

from latentnav.errors import ConfigError


def cosine_matrix(directions: torch.Tensor) -> torch.Tensor:
    """(K, d) directions -> (K, K) cosines."""
    unit = torch.nn.functional.normalize(directions.float(), dim=1)
    return unit @ unit.T


def off_target_change(effect: torch.Tensor, targets: Sequence[int]) -> torch.Tensor:
    """Per direction, the mean absolute change of every attribute but its own target: ``effect`` (K, A)
    (an :class:`EditEffect` row per direction, at its equal-success step) -> (K,); NaN where the direction
    cannot flip its attribute (its row is NaN)."""
    off = effect.reshape(len(targets), -1).clone()
    for i, t in enumerate(targets):
        off[i, t] = math.nan
    return torch.nanmean(off.abs(), dim=1)


def _interp(x: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear ys(x) on increasing grid xs; ys may have trailing dims."""
    if x <= xs[0]:
        return ys[0]
    if x > xs[-1]:  # beyond the grid: unknown, not the last value
        return torch.full_like(ys[-1], math.nan)
    if x == xs[-1]:
        return ys[-1]
    k = int(torch.searchsorted(xs, x.reshape(1)).item())
    t = (x - xs[k - 1]) / (xs[k] - xs[k - 1])
    return ys[k - 1] + t * (ys[k] - ys[k - 1])


class EditEffect(Metric):
    """Accumulates edits of ``num_directions`` directions over ``alphas`` for ``num_attributes``.

    ``update(direction, alpha_index, p0, p1, indices=None)``: probabilities (B, K) before and after
    moving B samples along one direction by ``alphas[alpha_index]``. ``targets[i]`` is the attribute
    column that direction i is meant to turn on.

    With ``replicates`` = R > 0 it also keeps R Poisson-bootstrap replicates of every sum (weights
    from (``seed``, sample index): see ``latentnav.lightning_modules.bootstrap``; ``update`` then needs
    the samples' global ``indices``), and ``compute()["replicates"]`` holds R results of the same
    form as the plain one, each with its own 50 % flip step. Two methods measured on the same
    latents with the same seed get the same weights: their replicates are paired.
    """

    full_state_update = False

    def __init__(self, alphas: Sequence[float], targets: Sequence[int], num_attributes: int,
                 replicates: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.register_buffer("alphas", torch.tensor(list(alphas), dtype=torch.float64), persistent=False)
        if not torch.all(self.alphas[1:] > self.alphas[:-1]) or self.alphas[0] != 0:
            raise ValueError("EditEffect: alphas must start at 0 and increase")
        self.targets = list(targets)
        self.replicates, self.seed = int(replicates), int(seed)
        r, n_dir, n_alpha = 1 + self.replicates, len(self.targets), len(self.alphas)
        # Leading dimension: 0 = the plain sums, 1..R = the bootstrap replicates.
        self.add_state("delta_sum", torch.zeros(r, n_dir, n_alpha, num_attributes, dtype=torch.float64),
                       dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(r, n_dir, n_alpha, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("flipped", torch.zeros(r, n_dir, n_alpha, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("was_off", torch.zeros(r, n_dir, n_alpha, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("delta_off_sum", torch.zeros(r, n_dir, n_alpha, num_attributes, dtype=torch.float64),
                       dist_reduce_fx="sum")

    def _weights(self, n: int, indices: Optional[torch.Tensor], device) -> torch.Tensor:
        """(n, 1 + R): ones, then the replicates' Poisson weights."""
        ones = torch.ones(n, 1, dtype=torch.float64, device=device)
        if not self.replicates:
            return ones
        if indices is None:
            raise ValueError("EditEffect: with replicates, update() needs the samples' indices")
        from latentnav.lightning_modules.bootstrap import poisson_weights

        w = poisson_weights(torch.as_tensor(indices).reshape(-1).cpu(), self.replicates, self.seed)
        return torch.cat([ones, w.to(device=device, dtype=torch.float64)], dim=1)

    def update(self, direction: int, alpha_index: int, p0: torch.Tensor, p1: torch.Tensor,
               indices: Optional[torch.Tensor] = None) -> None:
        p0, p1 = p0.detach().double(), p1.detach().double()
        w = self._weights(len(p0), indices, p0.device)  # (B, R + 1)
        t = self.targets[direction]
        off = (p0[:, t] < 0.5).double()
        delta = p1 - p0
        self.delta_sum[:, direction, alpha_index] += w.T @ delta
        self.count[:, direction, alpha_index] += w.sum(0)
        self.flipped[:, direction, alpha_index] += w.T @ (off * (p1[:, t] > 0.5).double())
        self.was_off[:, direction, alpha_index] += w.T @ off
        self.delta_off_sum[:, direction, alpha_index] += w.T @ (delta * off[:, None])

    def _result(self, r: int) -> dict[str, torch.Tensor]:
        mean_delta = self.delta_sum[r] / self.count[r].clamp_min(1)[..., None]
        mean_delta_off = self.delta_off_sum[r] / self.was_off[r].clamp_min(1)[..., None]
        flip = self.flipped[r] / self.was_off[r].clamp_min(1)
        n_dir, _, k = mean_delta.shape
        effect = torch.full((n_dir, k), math.nan, dtype=torch.float64)
        effect_off = torch.full((n_dir, k), math.nan, dtype=torch.float64)
        step = torch.full((n_dir,), math.nan, dtype=torch.float64)
        flip2, flip3 = torch.full_like(step, math.nan), torch.full_like(step, math.nan)
        for i in range(n_dir):
            reached = torch.nonzero(flip[i] >= 0.5).flatten()
            if len(reached) == 0:
                continue
            a = int(reached[0])
            if a == 0:
                alpha = self.alphas[0]
            else:  # where the flip rate crosses 0.5 between grid points a-1 and a
                f0, f1 = flip[i, a - 1], flip[i, a]
                alpha = self.alphas[a - 1] + (0.5 - f0) / (f1 - f0).clamp_min(1e-12) * (self.alphas[a] - self.alphas[a - 1])
            step[i] = alpha
            effect[i] = _interp(alpha, self.alphas, mean_delta[i])
            effect_off[i] = _interp(alpha, self.alphas, mean_delta_off[i])
            flip2[i] = _interp(2 * alpha, self.alphas, flip[i])
            flip3[i] = _interp(3 * alpha, self.alphas, flip[i])
        off_target = effect.clone()
        for i, t in enumerate(self.targets):
            off_target[i, t] = math.nan
        return {"effect": effect, "effect_where_off": effect_off, "step": step, "flip_at_2x": flip2, "flip_at_3x": flip3,
                "flip_curve": flip, "off_target_abs_mean": torch.nanmean(off_target.abs()),
                "off_target_abs_max": torch.nan_to_num(off_target.abs(), nan=-1.0).max(),
                "cannot_flip": torch.isnan(step)}

    def compute(self) -> dict:
        result = self._result(0)
        if self.replicates:
            result["replicates"] = [self._result(r) for r in range(1, 1 + self.replicates)]
        return result


def project_out(d: torch.Tensor, vectors: torch.Tensor, tol: float = 1e-6) -> torch.Tensor:
    """Remove from d (B, n) the span of vectors (B, n, m), per sample, then normalise.

    The span's basis comes from an SVD that drops directions with tiny singular values, so
    repeated or zero vectors do not wipe out d; a d that lies inside the span is an error.
    """
    if vectors.shape[-1] == 0:
        return torch.nn.functional.normalize(d, dim=-1)
    u, sv, _ = torch.linalg.svd(vectors, full_matrices=False)
    keep = (sv > tol * sv.amax(dim=-1, keepdim=True).clamp_min(1e-30)).unsqueeze(-2)  # (B, 1, m)
    u = u * keep
    d = d - torch.einsum("bnm,bm->bn", u, torch.einsum("bnm,bn->bm", u, d))
    norm = d.norm(dim=-1, keepdim=True)
    if bool((norm < 1e-6).any()):
        raise ConfigError("edit direction lies in the span of the kept attributes' directions; keep fewer attributes")
    return d / norm


def guided_step(generator, annotator, latents: torch.Tensor, direction: torch.Tensor, keep: Sequence[int],
                step: float, space: str = "z", classes: Optional[torch.Tensor] = None) -> torch.Tensor:
    """One classifier-guided move: ``direction`` with, per sample, the gradients of the kept
    attributes' logits (through the frozen generator and classifier) projected out, so that
    to first order the move leaves those attributes unchanged. Returns the moved latents.
    ``classes``: (B,) class ids for a class-conditional generator."""
    keep = sorted(set(keep))
    z = latents.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = annotator.logits(generator.synthesize(z, space, classes=classes))[:, list(keep)]
        grads = [torch.autograd.grad(logits[:, j].sum(), z, retain_graph=j < len(keep) - 1)[0].flatten(1)
                 for j in range(len(keep))]
    d = direction.flatten().to(z).expand(len(z), -1)
    d = project_out(d, torch.stack(grads, dim=2) if grads else d.new_zeros(len(z), d.shape[1], 0))
    return (latents + step * d.view_as(latents)).detach()


@torch.no_grad()
def measure_guided_edits(generator, annotator, directions: torch.Tensor, targets: Sequence[int], alphas: Sequence[float],
                         num_samples: int = 100, seed: int = 0, space: str = "z", substep: float = 0.5,
                         metric: Optional[EditEffect] = None, rank: int = 0, world_size: int = 1, judge=None,
                         judge_columns: Optional[Sequence[int]] = None,
                         judge_metric: Optional[EditEffect] = None) -> dict[str, torch.Tensor]:
    """:class:`EditEffect` of classifier-guided edits: each direction is followed in small steps,
    keeping every other classifier attribute fixed to first order (see :func:`guided_step`).
    With a held-out ``judge`` (its columns ``judge_columns`` in the annotator's order), ``judge_metric``
    is updated with the judge's probabilities of the same guided images (call its ``compute()``)."""
    metric = metric or EditEffect(alphas, targets, len(annotator.attributes))
    ids = torch.arange(num_samples)[rank::world_size]
    # Latent i as every other pass of the report draws it (``latents_at``): paired with the plain edits.
    latents = generator.latents_at(ids, seed, space)
    classes = generator.classes_at(ids)  # latent i's class (None: unconditional), as the other passes
    unit = torch.nn.functional.normalize(directions.float(), dim=1).to(latents.device)
    images = generator.synthesize(latents, space, classes=classes)
    p0 = annotator(images)

    def judged(images: torch.Tensor) -> torch.Tensor:
        q = judge(images)
        return q[:, list(judge_columns)] if judge_columns is not None else q

    q0 = judged(images) if judge_metric is not None else None
    for i, d in enumerate(unit):
        keep = [j for j in range(len(annotator.attributes)) if j != targets[i]]
        z, at = latents, 0.0
        for a, alpha in enumerate(alphas):
            while at < alpha - 1e-9:
                move = min(substep, alpha - at)
                z = guided_step(generator, annotator, z, d, keep, move, space, classes=classes)
                at += move
            images = generator.synthesize(z, space, classes=classes) if alpha != 0 else None
            metric.update(i, a, p0, p0 if alpha == 0 else annotator(images), ids)
            if judge_metric is not None:
                judge_metric.update(i, a, q0, q0 if alpha == 0 else judged(images), ids)
    return metric.compute()

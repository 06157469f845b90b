"""Attribute Dependency (AD) of edits, as in Wu, Lischinski & Shechtman, "StyleSpace analysis:
disentangled controls for StyleGAN image generation", CVPR 2021.

Moving along direction k (meant to change target attribute ``t = targets[k]``) by step
``alpha``, a judge classifier's logits go from ``l`` to ``l'``. With ``sigma_i`` the standard
deviation of attribute i's logit over *unedited* samples:

- normalised target change: ``E[l'_t - l_t] / sigma_t`` (signed: a direction is meant to
  increase its target's logit);
- mean-AD: ``1 / (A - 1) * sum_{i != t} E|l'_i - l_i| / sigma_i``, the mean absolute change of
  every other attribute in its own standard deviations.

AD is read as a function of the target change; methods are compared at *equal* target change:
:class:`AttributeDependency` interpolates mean-AD (piecewise linearly on the alpha grid) at the
first point where the normalised target change reaches ``at_target_change`` (in sigma units,
e.g. 1.0), and reports NaN for a direction that never gets there on the grid.

States are sums (float64, ``dist_reduce_fx="sum"``), so batches and DDP ranks add up: the
moments of the unedited logits (for sigma), and per (direction, alpha) the sums of the target's
signed change and of every attribute's absolute change. Since sigma_i is one constant per
attribute, ``E|dl_i| / sigma_i = (sum|dl_i| / n) / sigma_i`` can be normalised in ``compute``.

Optionally (``replicates=B > 0``) every state carries B Poisson-bootstrap replicates
(:mod:`latentnav.lightning_modules.bootstrap`: sample weights derived from ``(seed, sample
index)``, so every rank and batching agrees), and ``compute`` adds a percentile interval of
mean-AD at the target change (sigma re-estimated in each replicate, as it should be).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torchmetrics import Metric

from latentnav.lightning_modules.bootstrap import percentile_interval, poisson_weights


def interpolate_at_crossing(curve: torch.Tensor, values: torch.Tensor, level: float) -> torch.Tensor:
    """Where ``curve (..., n)`` first reaches ``level`` (>=) along its last dim, the value of
    ``values (..., n)`` there, linearly interpolated between the grid points around the crossing.

    NaN where the curve never reaches ``level`` (NaN grid points never count as reaching it);
    ``values[..., 0]`` where the curve starts at or above it.
    """
    reached = curve >= level
    ever = reached.any(-1)
    a = reached.to(torch.int64).argmax(-1, keepdim=True)  # first True (0 if none)
    prev = (a - 1).clamp_min(0)
    c0, c1 = curve.gather(-1, prev), curve.gather(-1, a)
    v0, v1 = values.gather(-1, prev), values.gather(-1, a)
    # a > 0: c0 < level <= c1 (a is the first point reaching it), so c1 - c0 > 0.
    frac = torch.where(a > 0, (level - c0) / torch.where(a > 0, c1 - c0, torch.ones_like(c1)), torch.ones_like(c1))
    out = (v0 + frac * (v1 - v0)).squeeze(-1)
    return torch.where(ever, out, torch.full_like(out, math.nan))


class AttributeDependency(Metric):
    """Accumulates attribute dependency of ``len(targets)`` directions over the step grid ``alphas``.

    Args:
        alphas: step sizes, increasing, starting at 0 (the unedited point, where every change is
            0; it anchors the interpolation). Grid index ``a`` in ``update`` refers to ``alphas[a]``.
        targets: ``targets[k]`` is the attribute (logit column) direction k is meant to increase.
        num_attributes: A, the number of logit columns (A >= 2).
        at_target_change: the normalised target change (sigma units, > 0) at which mean-AD is
            compared.
        replicates: B Poisson-bootstrap replicates (0: none); ``update`` then needs ``indices``.
        seed: the bootstrap seed (use the same for methods measured on the same latents, so their
            replicates pair up).
        level: the bootstrap interval's coverage.

    ``update(direction, alpha_index, logits_before (N, A), logits_after (N, A), indices=None)``:
    N samples before and after moving along ``direction`` by ``alphas[alpha_index]``.
    ``indices (N,)``: the samples' global ids (needed with ``replicates``).

    sigma is the population standard deviation (divided by the count, not count - 1) of
    ``logits_before`` over *every* update call: feed each sample's unedited logits once per
    (direction, alpha) cell, as a loop over the grid does, so every sample weighs the same and
    sigma is exactly that of the unedited samples seen. (Feeding some samples more often than
    others weights them more in sigma.)

    ``compute()`` returns (K directions, n alphas, A attributes; torchmetrics squeezes size-1
    results to scalars):

    - ``sigma (A,)``: std of each attribute's unedited logit (NaN before any update; an attribute
      with sigma 0 gets NaN normalised changes, and so NaN mean-AD);
    - ``target_change (K, n)``: ``E[dl_t] / sigma_t``;
    - ``attribute_change (K, n, A)``: ``E|dl_i| / sigma_i`` for every attribute (target included);
    - ``mean_ad (K, n)``: mean of ``attribute_change`` over the attributes other than the target;
    - ``mean_ad_at_target (K,)``: ``mean_ad`` where ``target_change`` first reaches
      ``at_target_change``, interpolated on the grid; NaN if it never does;
    - ``step_at_target (K,)``: the alpha at that point (NaN likewise);
    - with replicates: ``mean_ad_at_target_replicates (K, B)``, ``mean_ad_at_target_low`` and
      ``_high (K,)``: the percentile interval (NaN if the target change is not reached in some
      replicate: the interval is then not defined).

    Cells (direction, alpha) never updated are NaN.
    """

    full_state_update = False

    def __init__(self, alphas: Sequence[float], targets: Sequence[int], num_attributes: int,
                 at_target_change: float = 1.0, replicates: int = 0, seed: int = 0, level: float = 0.95) -> None:
        super().__init__()
        self.register_buffer("alphas", torch.tensor(list(alphas), dtype=torch.float64), persistent=False)
        if len(self.alphas) < 2 or self.alphas[0] != 0 or not torch.all(self.alphas[1:] > self.alphas[:-1]):
            raise ValueError("AttributeDependency: alphas must start at 0 and increase (at least two)")
        if num_attributes < 2:
            raise ValueError("AttributeDependency: needs at least two attributes (a target and another)")
        self.targets = [int(t) for t in targets]
        if not self.targets or any(not 0 <= t < num_attributes for t in self.targets):
            raise ValueError(f"AttributeDependency: targets {self.targets} must index {num_attributes} attributes")
        if not at_target_change > 0:
            raise ValueError(f"AttributeDependency: at_target_change must be > 0, got {at_target_change}")
        if replicates < 0:
            raise ValueError(f"AttributeDependency: replicates must be >= 0, got {replicates}")
        self.num_attributes, self.at_target_change = int(num_attributes), float(at_target_change)
        self.replicates, self.seed, self.level = int(replicates), int(seed), float(level)
        r = 1 + self.replicates  # replicate 0 is the plain estimate (all weights 1)
        k, n, a = len(self.targets), len(self.alphas), self.num_attributes
        f64 = torch.float64
        # moments of the unedited logits: sum w, sum w l, sum w l^2
        self.add_state("before_count", torch.zeros(r, dtype=f64), dist_reduce_fx="sum")
        self.add_state("before_sum", torch.zeros(r, a, dtype=f64), dist_reduce_fx="sum")
        self.add_state("before_sq_sum", torch.zeros(r, a, dtype=f64), dist_reduce_fx="sum")
        # per (direction, alpha): sum w, sum w dl_t, sum w |dl_i|
        self.add_state("count", torch.zeros(r, k, n, dtype=f64), dist_reduce_fx="sum")
        self.add_state("target_delta_sum", torch.zeros(r, k, n, dtype=f64), dist_reduce_fx="sum")
        self.add_state("abs_delta_sum", torch.zeros(r, k, n, a, dtype=f64), dist_reduce_fx="sum")

    def update(self, direction: int, alpha_index: int, logits_before: torch.Tensor, logits_after: torch.Tensor,
               indices: Optional[torch.Tensor | Sequence[int]] = None) -> None:
        l0 = logits_before.detach().to(self.count.device, torch.float64)
        l1 = logits_after.detach().to(self.count.device, torch.float64)
        if l0.ndim != 2 or l0.shape[1] != self.num_attributes or l1.shape != l0.shape:
            raise ValueError(f"AttributeDependency: logits must both be (N, {self.num_attributes}), "
                             f"got {tuple(l0.shape)} and {tuple(l1.shape)}")
        w = torch.ones(len(l0), 1, dtype=torch.float64, device=l0.device)
        if self.replicates:
            if indices is None:
                raise ValueError("AttributeDependency: with replicates, update needs the samples' indices")
            boot = poisson_weights(indices, self.replicates, self.seed).to(l0.device, torch.float64)
            if len(boot) != len(l0):
                raise ValueError(f"AttributeDependency: {len(l0)} samples but {len(boot)} indices")
            w = torch.cat([w, boot], dim=1)  # (N, 1 + B)
        t = self.targets[direction]
        delta = l1 - l0
        self.before_count += w.sum(0)
        self.before_sum += w.T @ l0
        self.before_sq_sum += w.T @ l0.square()
        self.count[:, direction, alpha_index] += w.sum(0)
        self.target_delta_sum[:, direction, alpha_index] += w.T @ delta[:, t]
        self.abs_delta_sum[:, direction, alpha_index] += w.T @ delta.abs()

    def compute(self) -> dict[str, torch.Tensor]:
        nan = math.nan
        n0 = self.before_count[:, None]
        mean = self.before_sum / n0
        var = (self.before_sq_sum / n0 - mean.square()).clamp_min(0)
        sigma = var.sqrt()  # (R, A)
        sigma = torch.where(sigma > 0, sigma, torch.full_like(sigma, nan))
        count = self.count.unsqueeze(-1)  # (R, K, n, 1)
        count = torch.where(count > 0, count, torch.full_like(count, nan))
        targets = torch.tensor(self.targets, device=sigma.device)
        target_change = self.target_delta_sum / count[..., 0] / sigma[:, targets, None]  # (R, K, n)
        attribute_change = self.abs_delta_sum / count / sigma[:, None, None, :]  # (R, K, n, A)
        others = torch.ones(len(self.targets), self.num_attributes, dtype=torch.bool, device=sigma.device)
        others[torch.arange(len(self.targets)), targets] = False
        others = others[None, :, None, :]
        # a NaN other attribute (sigma 0) makes mean-AD NaN, as documented (no nansum); the target is left out
        kept = torch.where(others, attribute_change, torch.zeros_like(attribute_change))
        mean_ad = kept.sum(-1) / (self.num_attributes - 1)
        at = interpolate_at_crossing(target_change, mean_ad, self.at_target_change)  # (R, K)
        step = interpolate_at_crossing(target_change, self.alphas.to(target_change).expand_as(target_change),
                                       self.at_target_change)
        out = {"sigma": sigma[0], "target_change": target_change[0], "attribute_change": attribute_change[0],
               "mean_ad": mean_ad[0], "mean_ad_at_target": at[0], "step_at_target": step[0]}
        if self.replicates:
            reps = at[1:].T  # (K, B)
            low, high = percentile_interval(reps, self.level)
            out.update(mean_ad_at_target_replicates=reps, mean_ad_at_target_low=low, mean_ad_at_target_high=high)
        return out

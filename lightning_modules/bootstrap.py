"""Poisson bootstrap intervals that work with summed metric states, batches and DDP.

The classic bootstrap resamples N samples with replacement, which needs all samples in one
place. The Poisson bootstrap gives every sample ``j`` an independent weight
``w[j, b] ~ Poisson(1)`` in each replicate ``b`` instead (as N grows the multinomial counts of
the classic bootstrap tend to exactly this). A replicate of a weighted mean is then
``sum_j w[j, b] x_j / sum_j w[j, b]``: both sums add up over batches and over DDP ranks, so a
metric keeps them as ``(..., B)`` states with ``dist_reduce_fx="sum"`` like any other.

For that to be one bootstrap, and not one per rank or per batch split, a sample's weights must
not depend on where it is processed: :func:`poisson_weights` derives them from
``(seed, sample index)`` alone (a counter-based hash, no random-number-generator state), so
every rank, every batching and every device gives the same weights. A sample seen several times
(e.g. once per direction and step size) gets the same weights each time.

The same seed and sample indices also pair the replicates across methods measured on the same
latents: replicate ``b`` of method X and replicate ``b`` of method Y reweight the same samples,
so ``percentile_interval(x_reps - y_reps)`` is a (tighter) interval of the paired difference.

- :func:`poisson_weights` ``(N,) indices -> (N, B)`` weights.
- :func:`percentile_interval` ``(..., B) replicates -> (low, high)``.
- :func:`separated`: do two intervals not overlap?
- :class:`BootstrapMean`: a torchmetrics ``Metric`` for the mean of a per-sample quantity, with
  its interval.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
from torchmetrics import Metric

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MASK64 = (1 << 64) - 1


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, elementwise on uint64 (arithmetic wraps modulo 2**64)."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _poisson1_cdf() -> np.ndarray:
    """P(K <= k) for K ~ Poisson(1), k = 0, 1, ... until it rounds to 1 in float64."""
    cdf, term, k = [], math.exp(-1.0), 0
    total = 0.0
    while total < 1.0 and k < 40:
        total += term
        cdf.append(min(total, 1.0))
        k += 1
        term /= k
    cdf[-1] = 1.0
    return np.asarray(cdf, dtype=np.float64)


_CDF = _poisson1_cdf()


def poisson_weights(indices: torch.Tensor | Sequence[int], replicates: int, seed: int) -> torch.Tensor:
    """Bootstrap weights ``(N, replicates)``, float32, i.i.d. Poisson(1), for samples ``indices (N,)``.

    Deterministic in ``(seed, index, replicate)`` only: the same sample gets the same row in
    any batch, on any rank and device. ``indices`` are global, non-negative sample ids (e.g. the
    latent's index in the sampled set). Returned on ``indices``' device (CPU for a sequence).
    """
    device = indices.device if isinstance(indices, torch.Tensor) else torch.device("cpu")
    idx = torch.as_tensor(indices).detach().reshape(-1).cpu().numpy()
    if idx.dtype.kind not in "iu":
        raise TypeError(f"poisson_weights: indices must be integers, got {idx.dtype}")
    if idx.size and idx.min() < 0:
        raise ValueError("poisson_weights: indices must be non-negative")
    if replicates < 1:
        raise ValueError(f"poisson_weights: replicates must be >= 1, got {replicates}")
    seed_key = _splitmix64(np.asarray([int(seed) & _MASK64], dtype=np.uint64))
    key = _splitmix64(seed_key ^ idx.astype(np.uint64))  # (N,): one stream per sample
    counter = np.arange(1, replicates + 1, dtype=np.uint64) * _GOLDEN  # (B,)
    bits = _splitmix64(key[:, None] + counter[None, :])  # (N, B)
    uniform = (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))  # in [0, 1)
    counts = np.searchsorted(_CDF, uniform, side="right")  # inverse CDF: #{k: P(K <= k) <= u}
    return torch.from_numpy(counts.astype(np.float32)).to(device)


def percentile_interval(replicate_values: torch.Tensor, level: float = 0.95,
                        ignore_nan: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Percentile interval over the last dimension: ``(..., B) -> (low (...), high (...))``.

    The ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles (linear interpolation). A NaN
    replicate (e.g. a quantity undefined in that resample) makes the interval NaN unless
    ``ignore_nan``, which drops such replicates (and so conditions on the quantity existing).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"percentile_interval: level must lie in (0, 1), got {level}")
    values = replicate_values.detach()
    if not values.is_floating_point():
        values = values.double()
    q = torch.tensor([(1.0 - level) / 2.0, (1.0 + level) / 2.0], dtype=values.dtype, device=values.device)
    quantile = torch.nanquantile if ignore_nan else torch.quantile
    low_high = quantile(values, q, dim=-1)
    return low_high[0], low_high[1]


def interval_of(replicates: Optional[torch.Tensor], level: float = 0.95) -> tuple[float, float]:
    """:func:`percentile_interval` of replicates (R,) as two floats, replicates where the quantity is
    undefined (NaN) dropped; (NaN, NaN) when there are none or no replicate defines it."""
    if replicates is None or not bool(torch.isfinite(replicates).any()):
        return math.nan, math.nan
    low, high = percentile_interval(replicates, level, ignore_nan=True)
    return float(low), float(high)


def separated(a_low: torch.Tensor, a_high: torch.Tensor, b_low: torch.Tensor, b_high: torch.Tensor) -> torch.Tensor:
    """True where intervals [a_low, a_high] and [b_low, b_high] do not overlap ("significant").

    Elementwise, broadcasting; an interval with a NaN end is never separated. Non-overlap of two
    95 % intervals is conservative; for paired measurements prefer the interval of the paired
    difference of replicates (see the module docstring) and check that it excludes 0.
    """
    a_low, a_high, b_low, b_high = (torch.as_tensor(v) for v in (a_low, a_high, b_low, b_high))
    return (a_high < b_low) | (b_high < a_low)


class BootstrapMean(Metric):
    """Mean of a per-sample quantity with a Poisson-bootstrap interval; summed states (DDP-safe).

    ``update(values, indices)``: ``values (N, *shape)`` for samples with global ids
    ``indices (N,)``. States: ``weighted_sum (*shape, B)`` = sum_j w[j, b] x_j,
    ``weight_sum (B,)`` = sum_j w[j, b], ``total (*shape)`` and ``count ()`` for the plain mean;
    all float64, all summed over batches and ranks. ``compute()``: ``mean (*shape)``,
    ``replicates (*shape, B)``, ``low`` and ``high`` (*shape) at ``level``. NaN values are not
    skipped: they make the mean and interval NaN.

    Each sample should be fed once (its weights are the same whenever it comes back, so a repeat
    counts twice in every replicate, like in the plain mean).
    """

    full_state_update = False

    def __init__(self, replicates: int = 1000, seed: int = 0, level: float = 0.95, shape: Sequence[int] = ()) -> None:
        super().__init__()
        if replicates < 2:
            raise ValueError(f"BootstrapMean: replicates must be >= 2, got {replicates}")
        self.replicates, self.seed, self.level, self.shape = int(replicates), int(seed), float(level), tuple(shape)
        f64 = torch.float64
        self.add_state("weighted_sum", torch.zeros(*self.shape, self.replicates, dtype=f64), dist_reduce_fx="sum")
        self.add_state("weight_sum", torch.zeros(self.replicates, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(self.shape, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, values: torch.Tensor, indices: torch.Tensor | Sequence[int]) -> None:
        values = torch.as_tensor(values).detach().to(self.total.device, torch.float64)
        if values.shape[1:] != self.shape or values.ndim != len(self.shape) + 1:
            raise ValueError(f"BootstrapMean: values must have shape (N, {', '.join(map(str, self.shape))}), "
                             f"got {tuple(values.shape)}")
        w = poisson_weights(indices, self.replicates, self.seed).to(self.total.device, torch.float64)  # (N, B)
        if len(w) != len(values):
            raise ValueError(f"BootstrapMean: {len(values)} values but {len(w)} indices")
        self.weighted_sum += torch.einsum("n...,nb->...b", values, w)
        self.weight_sum += w.sum(0)
        self.total += values.sum(0)
        self.count += len(values)

    def compute(self) -> dict[str, torch.Tensor]:
        mean = self.total / self.count
        replicates = self.weighted_sum / self.weight_sum  # a replicate of weight 0 (tiny N) is NaN
        low, high = percentile_interval(replicates, self.level)
        return {"mean": mean, "replicates": replicates, "low": low, "high": high}

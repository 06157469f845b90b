"""How well a generator covers the attributes, judged by a frozen attribute classifier.

Two figures per attribute, from the classifier's probabilities p on generated images:
- confident fraction: share of samples with p < 0.1 or p > 0.9 (the attribute is clearly
  present or absent; ambiguous renderings sit in between);
- frequency gap: |share of generated samples with p > 0.5 - the same share on real images|.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric


class AttributeStatistics(Metric):
    """Accumulates probabilities (B, K) in [0, 1]; ``compute`` gives per-attribute
    ``confident`` and ``frequency`` tensors of shape (K,). Summed states: DDP-synced."""

    full_state_update = False

    def __init__(self, num_attributes: int, low: float = 0.1, high: float = 0.9) -> None:
        super().__init__()
        self.low, self.high = low, high
        self.add_state("confident", torch.zeros(num_attributes, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("positive", torch.zeros(num_attributes, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, probs: torch.Tensor) -> None:
        probs = probs.detach().double()
        self.confident += ((probs < self.low) | (probs > self.high)).sum(0)
        self.positive += (probs > 0.5).sum(0)
        self.count += len(probs)

    def compute(self) -> dict[str, torch.Tensor]:
        return {"confident": self.confident / self.count, "frequency": self.positive / self.count}


def quality_summary(fake: dict[str, torch.Tensor], real_frequency: torch.Tensor, names: list[str]) -> dict[str, float]:
    """Flat dict: per-attribute and summary figures from two ``AttributeStatistics`` results."""
    gap = (fake["frequency"] - real_frequency.to(fake["frequency"])).abs()
    out: dict[str, float] = {}
    for i, name in enumerate(names):
        out[f"confident/{name}"] = float(fake["confident"][i])
        out[f"frequency/{name}"] = float(fake["frequency"][i])
        out[f"real_frequency/{name}"] = float(real_frequency[i])
        out[f"freq_gap/{name}"] = float(gap[i])
    out["confident_mean"] = float(fake["confident"].mean())
    out["confident_min"] = float(fake["confident"].min())
    out["freq_gap_max"] = float(gap.max())
    # One number to keep the best checkpoint by: high confidence, small worst gap.
    out["score"] = out["confident_mean"] - out["freq_gap_max"]
    return out


def format_quality(summary: dict[str, float], names: list[str]) -> str:
    lines = [f"{'attribute':<17} confident  gen_freq  real_freq  gap"]
    for n in names:
        lines.append(f"{n:<17} {summary[f'confident/{n}']:9.3f} {summary[f'frequency/{n}']:9.3f} "
                     f"{summary[f'real_frequency/{n}']:10.3f} {summary[f'freq_gap/{n}']:5.3f}")
    lines.append(f"mean confident {summary['confident_mean']:.3f}, min confident {summary['confident_min']:.3f}, "
                 f"max frequency gap {summary['freq_gap_max']:.3f}")
    return "\n".join(lines)

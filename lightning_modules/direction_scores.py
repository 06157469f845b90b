"""Scores of a set of directions from the evaluation's measurements: a name for each direction (the
attribute it moves most, and the sign that raises it), and purity / off-target change at equal target
success, with their bootstrap replicates. Pure tensor maths: the comparison and its report use them."""

from __future__ import annotations

from typing import Optional

import torch


def name_directions(plus: torch.Tensor, minus: torch.Tensor) -> dict:
    """From changes (K, A) at +alpha and -alpha: per direction the kept sign (+1/-1), the named
    attribute index, its change and the purity (change / total absolute change).

    The name is the attribute with the largest first-order effect, (plus - minus) / 2 (the
    part of the change that flips with the direction's sign); the sign is the one that raises
    it. (Taking the larger *increase* of either side instead names e.g. a Blond_Hair direction
    "Black_Hair", because going against it turns other hair colours on.)
    """
    linear = (plus - minus) / 2
    target = linear.abs().argmax(1)
    sign = torch.sign(linear.gather(1, target[:, None]).squeeze(1))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    chosen = torch.where(sign[:, None] > 0, plus, minus)
    change = chosen.gather(1, target[:, None]).squeeze(1)
    purity = change.clamp_min(0) / chosen.abs().sum(1).clamp_min(1e-12)
    return {"sign": sign.float(), "target": target, "change": change, "purity": purity, "changes": chosen}


def equal_success_scores(effect: dict, targets: list[int], named: dict, purity_threshold: float) -> dict:
    """Per direction, from an :class:`EditEffect` result (one classifier's): purity, off-target change,
    step, whether it controls its attribute, and the heat-map row (see the module docstring)."""
    k = len(targets)
    # torchmetrics squeezes one-element results: restore the (K,) and (K, A) shapes for K = 1.
    effect = {key: effect[key].reshape(k, -1) if key.startswith("effect") else effect[key].reshape(k)
              for key in ("effect", "effect_where_off", "step", "cannot_flip")}
    from latentnav.lightning_modules.edit_metrics import off_target_change

    off_mean = off_target_change(effect["effect"], targets)  # NaN where the direction cannot flip its attribute
    # Purity at equal target success (the 50 % flip step), on the samples the edit is for (its
    # attribute was off): over all samples, an attribute that is on for most faces barely moves
    # on average however clean the edit. A direction that cannot flip keeps the naming purity.
    at_step = effect["effect_where_off"]
    target_change = at_step.gather(1, torch.tensor(targets)[:, None]).squeeze(1)
    purity = torch.where(effect["cannot_flip"], named["purity"].double(),
                         target_change / at_step.abs().sum(1).clamp_min(1e-12))
    controls = (purity >= purity_threshold) & ~effect["cannot_flip"]
    return {"purity": purity, "off_target": off_mean, "controls": controls, "step": effect["step"],
            "effect": effect["effect"],
            "changes": torch.where(effect["cannot_flip"][:, None], named["changes"].double(), at_step)}


def replicate_scores(effect: dict, targets: list[int], named: dict, purity_threshold: float) -> Optional[dict]:
    """Off-target change and purity (R, K) in each bootstrap replicate (each with its own 50 % step)."""
    reps = effect.get("replicates")
    if not reps:
        return None
    scores = [equal_success_scores(r, targets, named, purity_threshold) for r in reps]
    return {key: torch.stack([sc[key] for sc in scores]) for key in ("off_target", "purity")}

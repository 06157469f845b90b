"""The one evaluation protocol of the direction report and the comparison.

For unit, oriented ``directions`` (K, d) with target attributes ``targets``:

1. **Equal target success** (``DirectionEvaluation`` mode ``effect``): each direction is stepped over the
   alpha grid until its attribute flips on half of the samples where it was off, by the annotator
   (the own judge) and, on the same images, by the held-out judge at *its* 50 % step; attribute
   dependency (AD) on the held-out judge's logits (the annotator's without one).
2. **What else the edit changes at that step** (mode ``at_step``, the held-out judge's step when there
   is one): pixel change, the judge's feature distance, realism drift (Fréchet distance of the judge's
   features; not FID), the nuisance factors in their units and the identity distance of a
   user-supplied embedding network, when given.

Every figure carries Poisson-bootstrap replicates over the samples (the same weights for every
method measured on the same latents), so intervals and paired differences come from one place.
``run(module)`` executes a module's test loop: ``trainer.test`` in the comparison,
:func:`run_in_this_process` inside a training run's ``on_fit_end`` (the report).
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch

from latentnav.lightning_modules.bootstrap import interval_of
from latentnav.lightning_modules.direction_evaluation import DirectionEvaluation

AD_LEVEL = 1.0  # target change (in its logit's standard deviations) at which AD is read


def run_in_this_process(num_samples: int, seed: int, batch_size: int = 100, rank: int = 0, world_size: int = 1,
                        device: torch.device | str = "cpu") -> Callable:
    """A ``run(module)`` for code already inside a Trainer's processes (a callback's ``on_fit_end``):
    this rank's latent indices ``rank, rank + W, ...`` in batches through ``test_step``, then
    ``on_test_epoch_end``, whose metric sync sums the ranks as ``trainer.test`` would."""

    def run(module) -> None:
        module.to(device)
        ids = torch.arange(num_samples)[rank::world_size]
        for b, chunk in enumerate(ids.split(batch_size)):
            module.test_step({"indices": chunk, "seed": seed}, b)
        module.on_test_epoch_end()

    return run


def evaluate(run: Callable, generator, annotator, directions: torch.Tensor, targets: Sequence[int], space: str,
             alphas: Sequence[float], judge=None, judge_columns: Optional[Sequence[int]] = None, nuisance=None,
             identity=None, replicates: int = 0, seed: int = 0) -> dict:
    """Both passes for one set of directions -> {"own": EditEffect result (annotator), "judge": the held-out
    judge's or None, "ad": AttributeDependency's compute(), "at_step": the ``at_step`` side result,
    "steps": (K,) the steps it was read at, "drift_replicates": R', "by_class": {class id: the annotator's
    EditEffect result on that class's latents} for a class-conditional generator, else None}."""
    kw = dict(judge=judge, judge_columns=judge_columns, replicates=replicates, bootstrap_seed=seed)
    effect = DirectionEvaluation(generator, annotator, directions, space, mode="effect", alphas=alphas,
                                 targets=list(targets), attribute_dependency=True, at_target_change=AD_LEVEL, **kw)
    run(effect)
    steps = (effect.judge_result if judge is not None else effect.result)["step"].reshape(-1)
    at = DirectionEvaluation(generator, annotator, directions, space, mode="at_step", steps=steps,
                             nuisance=nuisance, identity=identity, **kw)
    run(at)
    return {"own": effect.result, "judge": effect.judge_result, "ad": effect.side_result["ad"],
            "at_step": at.side_result, "steps": steps, "drift_replicates": at.drift_replicates,
            "by_class": effect.class_results}


def side_effects(evaluation: dict) -> dict:
    """Per direction, what else it changes: {name: (value (K,) or (K, F), replicates (R, K) / (R, K, F) or None)}
    for "ad", "pixels", "features", "drift", and where measured "nuisance", "identity"."""
    ad = evaluation["ad"]
    k = len(evaluation["steps"])
    reps = ad.get("mean_ad_at_target_replicates")
    out = {"ad": (ad["mean_ad_at_target"].reshape(k).double(), None if reps is None else reps.reshape(k, -1).T.double())}
    for name, value in evaluation["at_step"].items():
        out[name] = (value[0], value[1:] if len(value) > 1 else None)
    if "drift" not in out:
        out["drift"] = (torch.full((k,), math.nan, dtype=torch.float64), None)
    return out


def with_interval(value: float, replicates: Optional[torch.Tensor], fmt: str = ".3f") -> str:
    """``value [low, high]`` (95 % percentile interval of the replicates), or the value alone."""
    if value != value:
        return "n/a"
    low, high = interval_of(replicates)
    return format(value, fmt) + ("" if low != low else f" [{format(low, fmt)}, {format(high, fmt)}]")


def side_effect_header(factors: Optional[Sequence[str]], identity: bool) -> list[str]:
    """Column titles matching :func:`side_effect_cells`."""
    return (["AD", "pixel change", "feature distance", "realism drift"] + (["identity distance"] if identity else [])
            + (["largest nuisance move"] if factors else []))


def side_effect_cells(side: dict, i: int, factors: Optional[Sequence[str]] = None) -> list[str]:
    """Direction ``i``'s cells (value and 95 % interval) for :func:`side_effect_header`'s columns."""

    def cell(name: str, fmt: str = ".3f") -> str:
        value, reps = side[name]
        return with_interval(float(value[i]), None if reps is None else reps[:, i], fmt)

    cells = [cell("ad"), cell("pixels"), cell("features", ".2f"), cell("drift", ".2f")]
    if "identity" in side:
        cells.append(cell("identity"))
    if factors:
        value, reps = side["nuisance"]
        moves = value[i]
        if bool(torch.isfinite(moves).any()):
            f = int(torch.nan_to_num(moves, nan=-1).argmax())
            cells.append(f"{factors[f]} " + with_interval(float(moves[f]), None if reps is None else reps[:, i, f]))
        else:
            cells.append("n/a")
    return cells


def side_effects_explained(judged: bool, factors: Optional[Sequence[str]], identity: Optional[str]) -> str:
    """One paragraph saying what each side-effect column is and which is which."""
    return (f"What else an edit changes, at the equal-success step of the {'held-out' if judged else 'own'} judge, "
            "each with a 95 % bootstrap interval: attribute dependency (AD, Wu et al. 2021: the other attributes' mean "
            "absolute logit change in their standard deviations, read where the target's logit has moved by "
            f"{AD_LEVEL:g} standard deviation, by the {'held-out' if judged else 'own'} judge); the mean absolute pixel "
            "change (images in [-1, 1]) and the distance of the judge's penultimate features (plain image distances, "
            "always available); realism drift (Fréchet distance of the judge's penultimate features between edited "
            "and unedited images: not FID, comparable only within one judge)"
            + (f"; the identity distance (1 - cosine of the embeddings of {identity}, a face-embedding network the "
               "user supplied)" if identity else "")
            + (f"; and the generator-independent nuisance factors read back from the images ({', '.join(factors)}; "
               "in their own units; the largest move is shown)" if factors else "") + ".")

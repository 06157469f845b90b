"""Measuring directions over many latents as a Lightning ``test`` loop (devices, ranks, precision from the Trainer).

Used by the comparison command: one pass names every direction by its first-order effect
(:class:`AttributeChange` at +alpha and -alpha), a second measures the oriented directions at
equal target success (:class:`latentnav.lightning_modules.edit_metrics.EditEffect`). The batches are
latent indices (``latentnav.datamodules.latent_indices.LatentIndicesDataModule.test_dataloader``: rank r
of W gets indices r, r + W, ..., never padded), latent i = ``generator.latents_at([i], seed)``,
and every metric is a sum synced across ranks: 1 and N processes give the same numbers.
"""

from __future__ import annotations

from typing import Literal, Optional, Sequence

import pytorch_lightning as pl
import torch
from torchmetrics import Metric

from latentnav.lightning_modules.edit_metrics import EditEffect


MAX_DRIFT_FEATURES = 512  # widest judge feature for which realism drift is measured (memory: K * n_alpha * F^2)


class AttributeChange(Metric):
    """Sums of the change of every attribute's probability per direction: states (K, A) float64, synced by sum.

    ``update(direction, p0, p1)`` with probabilities (B, A); ``compute()`` -> mean change (K, A)."""

    full_state_update = False

    def __init__(self, num_directions: int, num_attributes: int) -> None:
        super().__init__()
        self.add_state("total", torch.zeros(num_directions, num_attributes, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(num_directions, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, direction: int, p0: torch.Tensor, p1: torch.Tensor) -> None:
        self.total[direction] += (p1.double() - p0.double()).sum(0)
        self.count[direction] += len(p0)

    def compute(self) -> torch.Tensor:
        return self.total / self.count.clamp_min(1)[:, None]


class DirectionEvaluation(pl.LightningModule):
    """Edits latents along unit ``directions`` (K, d) and judges them with the frozen classifier.

    Args:
        generator: a loaded, frozen ``FrozenGenerator`` (loaded as the directions' run did).
        annotator: a loaded, frozen ``Annotator``; probabilities (B, A) in [0, 1].
        directions: (K, d) rows, normalised here.
        space: latent space of the directions.
        mode: ``naming`` (mean change at +/- ``naming_alpha``: ``self.result`` = {"plus", "minus"}
            (K, A) each) or ``effect`` (``EditEffect`` over ``alphas`` for ``targets``: its compute()).
        judge: in ``effect`` mode, a second, held-out classifier that scores the same edited images
            (``self.judge_result``: its own ``EditEffect``, at *its* equal target success);
            ``judge_columns`` picks and orders its columns as the annotator's attributes.
        replicates, bootstrap_seed: Poisson-bootstrap replicates of the ``effect`` sums (weights from the
            latent indices: every method measured on the same latents gets the same, paired, weights).
        side_effects: in ``effect`` mode, also what else each edit changes, per step: attribute dependency
            (``AttributeDependency`` on the held-out judge's logits, or the annotator's without one; read at
            ``at_target_change`` sigma of target change), the mean absolute pixel change, the distance
            of the judge's penultimate features, and with ``nuisance`` (a frozen reader: images -> (B, F)
            factors in their units, e.g. the demo's) the mean absolute change of each factor.
            With a feature at most ``MAX_DRIFT_FEATURES`` wide, realism drift too: the Fréchet distance of the
            judge's penultimate features between edited and unedited images (``GridFrechet``; not FID).
            ``self.side_result``: {"ad": AD's compute(), "pixels", "features", "nuisance": (1 + R, K, n_alpha, F),
            "drift": (K, n_alpha)}.
    """

    def __init__(self, generator, annotator, directions: torch.Tensor, space: str = "z",
                 mode: Literal["naming", "effect"] = "effect", naming_alpha: float = 2.0,
                 alphas: Sequence[float] = (0.0, 1.0), targets: Optional[Sequence[int]] = None,
                 judge=None, judge_columns: Optional[Sequence[int]] = None, replicates: int = 0,
                 bootstrap_seed: int = 0, side_effects: bool = False, nuisance=None,
                 at_target_change: float = 1.0) -> None:
        super().__init__()
        self.generator, self.annotator, self.judge = generator, annotator, judge
        self.judge_columns = list(judge_columns) if judge_columns is not None else None
        self.register_buffer("directions", torch.nn.functional.normalize(directions.float(), dim=1), persistent=False)
        self.space, self.mode, self.naming_alpha, self.alphas = space, mode, naming_alpha, list(alphas)
        k, a = len(directions), len(annotator.attributes)
        if mode == "naming":
            self.plus, self.minus = AttributeChange(k, a), AttributeChange(k, a)
        else:
            if targets is None or len(targets) != k:
                raise ValueError("DirectionEvaluation: mode 'effect' needs one target attribute per direction")
            self.effect = EditEffect(self.alphas, list(targets), a, replicates, bootstrap_seed)
            if judge is not None:
                self.judge_effect = EditEffect(self.alphas, list(targets), a, replicates, bootstrap_seed)
            self.side_effects, self.nuisance = side_effects, nuisance
            if side_effects:
                from latentnav.lightning_modules.attribute_dependency import AttributeDependency
                from latentnav.lightning_modules.change_metrics import MeanAbsChange

                n = len(self.alphas)
                self.ad = AttributeDependency(self.alphas, list(targets), a, at_target_change, replicates, bootstrap_seed)
                self.pixel_change = MeanAbsChange(k, n, 1, replicates, bootstrap_seed)
                self.feature_change = MeanAbsChange(k, n, 1, replicates, bootstrap_seed)
                if nuisance is not None:
                    self.nuisance_change = MeanAbsChange(k, n, len(nuisance.factor_names), replicates, bootstrap_seed)
                reader = judge if judge is not None else annotator
                width = int(reader._head().in_features)
                # Realism drift needs K * n_alpha covariance sums: only for a narrow feature (the demo judge: 96).
                if width <= MAX_DRIFT_FEATURES:
                    from latentnav.lightning_modules.feature_frechet import GridFrechet

                    self.drift = GridFrechet(k, n, width)
        self.side_result: Optional[dict] = None
        self.result: Optional[dict] = None
        self.judge_result: Optional[dict] = None

    def _probs(self, latents: torch.Tensor) -> torch.Tensor:
        return self._probs_of(self.generator.synthesize(latents, self.space))

    def _probs_of(self, images: torch.Tensor) -> torch.Tensor:
        return self.annotator(images).float()

    def _observe(self, latents: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the measures read from one batch of images: the annotator's probabilities ``p`` (B, A);
        with a judge its probabilities ``q`` in the annotator's column order; with ``side_effects`` the
        images, the judge's (or else the annotator's) logits and penultimate features, the nuisance factors."""
        images = self.generator.synthesize(latents, self.space)
        if self.judge is None and not self.side_effects:
            return {"p": self._probs_of(images)}
        reader = self.judge if self.judge is not None else self.annotator
        features, logits = reader.features_and_logits(images)
        logits = logits.float()
        # Without a judge the annotator is the reader: its probabilities come from that same pass.
        out = {"p": self._probs_of(images) if self.judge is not None else torch.sigmoid(logits)}
        if self.judge is not None:
            logits = logits[:, self.judge_columns] if self.judge_columns else logits
            out["q"] = torch.sigmoid(logits)
        if self.side_effects:
            out.update(images=images.float(), judge_logits=logits, features=features.float())
            if self.nuisance is not None:
                out["nuisance"] = self.nuisance(images).float()
        return out

    @torch.no_grad()
    def test_step(self, batch: dict, batch_idx: int) -> None:
        latents = self.generator.latents_at(batch["indices"], int(batch["seed"]), self.space).to(self.device)
        if self.mode == "effect" and (self.judge is not None or self.side_effects):
            ids = batch["indices"]
            v0 = self._observe(latents)
            for i, d in enumerate(self.directions):
                for a, alpha in enumerate(self.alphas):
                    v1 = v0 if alpha == 0 else self._observe(latents + alpha * d.view_as(latents[0]))
                    self.effect.update(i, a, v0["p"], v1["p"], ids)
                    if self.judge is not None:
                        self.judge_effect.update(i, a, v0["q"], v1["q"], ids)
                    if self.side_effects:
                        self.ad.update(i, a, v0["judge_logits"], v1["judge_logits"], ids)
                        pixels = (v1["images"] - v0["images"]).abs().flatten(1).mean(1, keepdim=True)
                        self.pixel_change.update(i, a, torch.zeros_like(pixels), pixels, ids)
                        feats = (v1["features"] - v0["features"]).norm(dim=1, keepdim=True)
                        self.feature_change.update(i, a, torch.zeros_like(feats), feats, ids)
                        if self.nuisance is not None:
                            self.nuisance_change.update(i, a, v0["nuisance"], v1["nuisance"], ids)
                        if hasattr(self, "drift"):
                            self.drift.update(i, a, v0["features"], v1["features"])
            return
        p0 = self._probs(latents)
        for i, d in enumerate(self.directions):
            d = d.view_as(latents[0])
            if self.mode == "naming":
                self.plus.update(i, p0, self._probs(latents + self.naming_alpha * d))
                self.minus.update(i, p0, self._probs(latents - self.naming_alpha * d))
                continue
            for a, alpha in enumerate(self.alphas):
                self.effect.update(i, a, p0, p0 if alpha == 0 else self._probs(latents + alpha * d), batch["indices"])

    def on_test_epoch_end(self) -> None:
        # Every rank computes (the metrics' sync is a collective), so every rank holds the result.
        if self.mode == "naming":
            self.result = {"plus": self.plus.compute().cpu(), "minus": self.minus.compute().cpu()}
        else:
            self.result = _to_cpu(self.effect.compute())
            if self.judge is not None:
                self.judge_result = _to_cpu(self.judge_effect.compute())
            if self.side_effects:
                self.side_result = {"ad": {k: v.cpu() for k, v in self.ad.compute().items()},
                                    "pixels": self.pixel_change.compute().cpu(),
                                    "features": self.feature_change.compute().cpu()}
                if self.nuisance is not None:
                    self.side_result["nuisance"] = self.nuisance_change.compute().cpu()
                if hasattr(self, "drift"):
                    self.side_result["drift"] = self.drift.compute().cpu()


def _to_cpu(result: dict) -> dict:
    return {k: [_to_cpu(r) for r in v] if k == "replicates" else v.cpu() for k, v in result.items()}

"""Measuring directions over many latents as a Lightning ``test`` loop (devices, ranks, precision from the Trainer).

Used by the comparison command: one pass names every direction by its first-order effect
(:class:`AttributeChange` at +alpha and -alpha), a second measures the oriented directions at
equal target success (:class:`latentnav.lightning_modules.edit_metrics.EditEffect`). The batches are
latent indices (``latentnav.datamodules.latent_indices.LatentIndicesDataModule.test_dataloader``: rank r
of W gets indices r, r + W, ..., never padded), latent i = ``generator.latents_at([i], seed)``,
and every metric is a sum synced across ranks: 1 and N processes give the same numbers.

A class-conditional generator renders latent i (and its edits: directions are shared across classes) in
class ``generator.classes_at([i])``; in ``effect`` mode the edit effect is also kept per class
(``class_results``: {class id: EditEffect result, without replicates}), for reports by class.
"""

from __future__ import annotations

import math

from typing import Literal, Optional, Sequence

import pytorch_lightning as pl
import torch
from torchmetrics import Metric

from latentnav.generators.base import check_finite
from latentnav.lightning_modules.edit_metrics import EditEffect


MAX_DRIFT_FEATURES = 512  # widest judge feature for which realism drift is measured (memory: K * F^2 per replicate)
DRIFT_MEMORY = 1 << 28  # bytes of drift states (float64 covariance sums) before its replicates are cut down


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
            (K, A) each), ``effect`` (``EditEffect`` over ``alphas`` for ``targets``: its compute()) or
            ``at_step`` (what else each edit changes at its own step ``steps (K,)``, see below).
        judge: a second, held-out classifier that scores the same edited images. In ``effect`` mode
            ``self.judge_result`` is its own ``EditEffect`` (at *its* equal target success); ``judge_columns``
            picks and orders its columns as the annotator's attributes. In ``at_step`` mode its penultimate
            features give the feature distance and the realism drift (the annotator's without a judge).
        replicates, bootstrap_seed: Poisson-bootstrap replicates of every sum (weights from the latent
            indices: every method measured on the same latents gets the same, paired, weights).
        attribute_dependency: in ``effect`` mode, also ``AttributeDependency`` on the held-out judge's logits
            (the annotator's without one), read at ``at_target_change`` sigma of target change:
            ``self.side_result = {"ad": its compute()}``.
        steps: in ``at_step`` mode, the step of each direction (NaN: not measured, e.g. it cannot flip).
            ``self.side_result``: "pixels" (mean |d pixel|, images in [-1, 1]), "features" (distance of the
            reader's penultimate features), with ``nuisance`` (a frozen reader: images -> (B, F) factors in
            their units, e.g. the demo's) "nuisance" (mean |d factor|, (1 + R, K, F)), with ``identity`` (a
            frozen ``IdentityEmbedding``) "identity" (mean 1 - cos of the embeddings), each (1 + R, K) with
            row 0 the estimate and rows 1.. the replicates; and with a reader feature at most
            ``MAX_DRIFT_FEATURES`` wide "drift": the Fréchet distance of those features between edited and
            unedited images (``GridFrechet``; not FID), (1 + R', K) where R' = ``self.drift_replicates`` is
            R cut down to fit ``DRIFT_MEMORY``.
    """

    def __init__(self, generator, annotator, directions: torch.Tensor, space: str = "z",
                 mode: Literal["naming", "effect", "at_step"] = "effect", naming_alpha: float = 2.0,
                 alphas: Sequence[float] = (0.0, 1.0), targets: Optional[Sequence[int]] = None,
                 judge=None, judge_columns: Optional[Sequence[int]] = None, replicates: int = 0,
                 bootstrap_seed: int = 0, attribute_dependency: bool = False, at_target_change: float = 1.0,
                 steps: Optional[torch.Tensor] = None, nuisance=None, identity=None) -> None:
        super().__init__()
        self.generator, self.annotator, self.judge = generator, annotator, judge
        self.nuisance, self.identity = nuisance, identity
        self.judge_columns = list(judge_columns) if judge_columns is not None else None
        self.register_buffer("directions", torch.nn.functional.normalize(directions.float(), dim=1), persistent=False)
        self.space, self.mode, self.naming_alpha, self.alphas = space, mode, naming_alpha, list(alphas)
        self.attribute_dependency = attribute_dependency and mode == "effect"
        k, a = len(directions), len(annotator.attributes)
        self.class_ids: list[int] = []
        if mode == "naming":
            self.plus, self.minus = AttributeChange(k, a), AttributeChange(k, a)
        elif mode == "effect":
            if targets is None or len(targets) != k:
                raise ValueError("DirectionEvaluation: mode 'effect' needs one target attribute per direction")
            self.effect = EditEffect(self.alphas, list(targets), a, replicates, bootstrap_seed)
            # Per class of a conditional generator (each at its own equal target success; no replicates).
            self.class_ids = sorted(set(generator.class_choice)) if getattr(generator, "conditional", False) else []
            self.class_effects = torch.nn.ModuleList([EditEffect(self.alphas, list(targets), a)
                                                      for _ in self.class_ids])
            if judge is not None:
                self.judge_effect = EditEffect(self.alphas, list(targets), a, replicates, bootstrap_seed)
            if self.attribute_dependency:
                from latentnav.lightning_modules.attribute_dependency import AttributeDependency

                self.ad = AttributeDependency(self.alphas, list(targets), a, at_target_change, replicates,
                                              bootstrap_seed)
        elif mode == "at_step":
            if steps is None or len(steps) != k:
                raise ValueError("DirectionEvaluation: mode 'at_step' needs one step per direction")
            self.steps = [float(x) for x in torch.as_tensor(steps).reshape(-1).tolist()]
            self._build_change_metrics(k, replicates, bootstrap_seed)
        else:
            raise ValueError(f"DirectionEvaluation: unknown mode {mode!r}")
        self.side_result: Optional[dict] = None
        self._batch_ids: Optional[torch.Tensor] = None  # the latent indices of the batch in test_step
        self._batch_classes: Optional[torch.Tensor] = None  # their classes (a conditional generator), else None
        self.result: Optional[dict] = None
        self.class_results: Optional[dict[int, dict]] = None
        self.judge_result: Optional[dict] = None

    def _build_change_metrics(self, k: int, replicates: int, seed: int) -> None:
        from latentnav.lightning_modules.change_metrics import MeanAbsChange

        self.pixel_change = MeanAbsChange(k, 1, 1, replicates, seed)
        self.feature_change = MeanAbsChange(k, 1, 1, replicates, seed)
        if self.nuisance is not None:
            self.nuisance_change = MeanAbsChange(k, 1, len(self.nuisance.factor_names), replicates, seed)
        if self.identity is not None:
            self.identity_change = MeanAbsChange(k, 1, 1, replicates, seed)
        width = int(self._reader()._head().in_features)
        self.drift_replicates = 0
        # Realism drift keeps K covariance sums per replicate: only for a narrow feature (the demo judge: 96).
        if width <= MAX_DRIFT_FEATURES:
            from latentnav.lightning_modules.feature_frechet import GridFrechet

            per_replicate = 8 * (k + 1) * width * width
            self.drift_replicates = int(min(replicates, max(0, DRIFT_MEMORY // per_replicate - 1)))
            self.drift = GridFrechet(k, 1, width, self.drift_replicates, seed)

    def _reader(self):
        return self.judge if self.judge is not None else self.annotator

    def _render(self, latents: torch.Tensor) -> torch.Tensor:
        """Images of this batch's (edited) latents; NaN or inf is one line naming their indices."""
        # Classes only for a conditional generator: an unconditional one (or a stand-in) is called as it always was.
        given = {} if self._batch_classes is None else {"classes": self._batch_classes}
        images = self.generator.synthesize(latents, self.space, **given)
        check_finite(images, self._batch_ids, "evaluation")
        return images

    def _probs(self, latents: torch.Tensor) -> torch.Tensor:
        return self._probs_of(self._render(latents))

    def _probs_of(self, images: torch.Tensor) -> torch.Tensor:
        return self.annotator(images).float()

    def _observe(self, latents: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the measures read from one batch of images: the annotator's probabilities ``p`` (B, A);
        with a judge its probabilities ``q`` in the annotator's column order and ``judge_logits`` (the
        annotator's logits without a judge: what AD reads); in ``at_step`` mode the images, the reader's
        penultimate features, the nuisance factors and the identity embeddings."""
        images = self._render(latents)
        out: dict[str, torch.Tensor] = {}
        if self.mode == "at_step":
            out["images"] = images.float()
            out["features"] = self._reader().features(images).float()
            if self.nuisance is not None:
                out["nuisance"] = self.nuisance(images).float()
            if self.identity is not None:
                out["identity"] = self.identity(images).float()
            return out
        if self.judge is None and not self.attribute_dependency:
            return {"p": self._probs_of(images)}
        logits = self._reader().logits(images).float()
        # Without a judge the annotator is the reader: its probabilities come from that same pass.
        out["p"] = self._probs_of(images) if self.judge is not None else torch.sigmoid(logits)
        if self.judge is not None:
            logits = logits[:, self.judge_columns] if self.judge_columns else logits
            out["q"] = torch.sigmoid(logits)
        out["judge_logits"] = logits
        return out

    @torch.no_grad()
    def test_step(self, batch: dict, batch_idx: int) -> None:
        latents = self.generator.latents_at(batch["indices"], int(batch["seed"]), self.space).to(self.device)
        ids = self._batch_ids = batch["indices"]
        classes_at = getattr(self.generator, "classes_at", None)
        self._batch_classes = classes_at(ids) if classes_at is not None else None
        if self.mode == "at_step":
            self._measure_at_steps(latents, ids)
            return
        if self.mode == "effect" and (self.judge is not None or self.attribute_dependency):
            v0 = self._observe(latents)
            for i, d in enumerate(self.directions):
                for a, alpha in enumerate(self.alphas):
                    v1 = v0 if alpha == 0 else self._observe(latents + alpha * d.view_as(latents[0]))
                    self.effect.update(i, a, v0["p"], v1["p"], ids)
                    self._update_by_class(i, a, v0["p"], v1["p"], ids)
                    if self.judge is not None:
                        self.judge_effect.update(i, a, v0["q"], v1["q"], ids)
                    if self.attribute_dependency:
                        self.ad.update(i, a, v0["judge_logits"], v1["judge_logits"], ids)
            return
        p0 = self._probs(latents)
        for i, d in enumerate(self.directions):
            d = d.view_as(latents[0])
            if self.mode == "naming":
                self.plus.update(i, p0, self._probs(latents + self.naming_alpha * d))
                self.minus.update(i, p0, self._probs(latents - self.naming_alpha * d))
                continue
            for a, alpha in enumerate(self.alphas):
                p1 = p0 if alpha == 0 else self._probs(latents + alpha * d)
                self.effect.update(i, a, p0, p1, ids)
                self._update_by_class(i, a, p0, p1, ids)

    def _update_by_class(self, direction: int, alpha_index: int, p0: torch.Tensor, p1: torch.Tensor,
                         ids: torch.Tensor) -> None:
        """The per-class edit effects (a conditional generator): each class's rows of the batch."""
        for c, metric in zip(self.class_ids, self.class_effects):
            rows = self._batch_classes == c
            if bool(rows.any()):
                metric.update(direction, alpha_index, p0[rows], p1[rows], ids[rows.to(ids.device)])

    def _measure_at_steps(self, latents: torch.Tensor, ids: torch.Tensor) -> None:
        from latentnav.lightning_modules.identity_embedding import identity_distance

        v0 = self._observe(latents)
        if hasattr(self, "drift"):
            self.drift.update(reference=v0["features"], indices=ids)
        for i, (d, step) in enumerate(zip(self.directions, self.steps)):
            if step != step:
                continue  # no equal-success step: nothing to read
            v1 = self._observe(latents + step * d.view_as(latents[0]))
            pixels = (v1["images"] - v0["images"]).abs().flatten(1).mean(1, keepdim=True)
            self.pixel_change.update(i, 0, torch.zeros_like(pixels), pixels, ids)
            feats = (v1["features"] - v0["features"]).norm(dim=1, keepdim=True)
            self.feature_change.update(i, 0, torch.zeros_like(feats), feats, ids)
            if self.nuisance is not None:
                self.nuisance_change.update(i, 0, v0["nuisance"], v1["nuisance"], ids)
            if self.identity is not None:
                dist = identity_distance(v0["identity"], v1["identity"])
                self.identity_change.update(i, 0, torch.zeros_like(dist), dist, ids)
            if hasattr(self, "drift"):
                self.drift.update(edited=v1["features"], direction=i, indices=ids)

    def on_test_epoch_end(self) -> None:
        # Every rank computes (the metrics' sync is a collective), so every rank holds the result.
        if self.mode == "naming":
            self.result = {"plus": self.plus.compute().cpu(), "minus": self.minus.compute().cpu()}
        elif self.mode == "effect":
            self.result = _to_cpu(self.effect.compute())
            if self.class_ids:  # every rank computes each (a collective), rows of a class or not
                self.class_results = {c: _to_cpu(m.compute()) for c, m in zip(self.class_ids, self.class_effects)}
            if self.judge is not None:
                self.judge_result = _to_cpu(self.judge_effect.compute())
            if self.attribute_dependency:
                self.side_result = {"ad": {k: v.cpu() for k, v in self.ad.compute().items()}}
        else:
            skipped = torch.tensor([s != s for s in self.steps])

            k = len(self.steps)

            def masked(change: torch.Tensor, width: int) -> torch.Tensor:  # -> (1 + R, K, F), NaN if skipped
                # torchmetrics squeezes a one-element result (K = 1, R = 0, F = 1): restore the shape first.
                change = change.reshape(-1, k, 1, width)[:, :, 0].cpu().clone()
                change[:, skipped] = math.nan
                return change

            self.side_result = {"pixels": masked(self.pixel_change.compute(), 1)[..., 0],
                                "features": masked(self.feature_change.compute(), 1)[..., 0]}
            if self.nuisance is not None:
                self.side_result["nuisance"] = masked(self.nuisance_change.compute(), len(self.nuisance.factor_names))
            if self.identity is not None:
                self.side_result["identity"] = masked(self.identity_change.compute(), 1)[..., 0]
            if hasattr(self, "drift"):  # NaN where nothing was added
                self.side_result["drift"] = self.drift.compute().reshape(-1, k, 1)[:, :, 0].cpu()


def _to_cpu(result: dict) -> dict:
    return {k: [_to_cpu(r) for r in v] if k == "replicates" else v.cpu() for k, v in result.items()}

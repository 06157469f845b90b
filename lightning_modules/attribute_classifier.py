"""Multi-label attribute classifier: labels generated images and judges edits later."""

from __future__ import annotations

from typing import Optional

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MultilabelAccuracy, MultilabelAUROC

from latentnav.errors import ConfigError, TrainingDivergedError, check_attribute_columns, check_learning_rate, check_positive
from latentnav.lightning_modules.backbones import build_backbone
from latentnav.lightning_modules.schedules import adamw_cosine


def _split_metrics(num_labels: int, auroc: bool) -> MetricCollection:
    # average=None keeps one value per attribute; compute() syncs the states across ranks,
    # so the numbers are the same on 1 or N processes.
    metrics: dict[str, nn.Module] = {"acc": MultilabelAccuracy(num_labels, average=None)}
    if auroc:
        metrics["auroc"] = MultilabelAUROC(num_labels, average=None)
    return MetricCollection(metrics)


class AttributeClassifier(pl.LightningModule):
    """Predicts K binary attributes from images with a BCE-with-logits loss.

    Input: float images (B, 3, image_size, image_size) in [-1, 1]. Output of ``forward``:
    logits (B, K), one column per name in ``attributes``. Per-attribute accuracy and
    AUROC are logged per split as ``{split}/{acc,auroc}/{name}`` plus their means.

    Args:
        attributes: the K attribute names, in the data's column order.
        backbone: ``small_cnn`` (demo) or ``resnet18``/``34``/``50`` (CelebA), untrained.
        width: channel width of ``small_cnn``.
        image_size: input side the classifier is trained at; recorded so that the
            annotator can resize other images (e.g. a generator's) to it.
        lr, weight_decay: AdamW settings; the rate follows a cosine decay over the run.
    """

    def __init__(
        self,
        attributes: list[str],
        backbone: str = "small_cnn",
        width: int = 32,
        image_size: int = 32,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__()
        check_positive("model.width", width)
        check_learning_rate("model.lr", lr)
        if not attributes:
            raise ConfigError("model.attributes: expected a non-empty list of attribute names")
        self.save_hyperparameters()
        self.attributes = list(attributes)
        self.net = build_backbone(backbone, len(attributes), width=width)
        k = len(attributes)
        # Keyed "<split>_" because a ModuleDict key "train" would shadow nn.Module.train.
        self.metrics = nn.ModuleDict(
            {"train_": _split_metrics(k, auroc=False), "val_": _split_metrics(k, True), "test_": _split_metrics(k, True)}
        )
        # The epoch means of the losses are torchmetrics computed in this module's epoch-end hooks,
        # which every rank runs. A value logged from a step with on_epoch=True, sync_dist=True is
        # reduced lazily by whoever reads it first: at the end of a training epoch that is the
        # progress bar, on rank 0 only, and the ranks' collectives then cross (a hang under DDP).
        self.losses = nn.ModuleDict({s: MeanMetric() for s in ("train_", "val_", "test_")})

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def setup(self, stage: Optional[str] = None) -> None:
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        check_attribute_columns(self.attributes, datamodule)
        size = getattr(datamodule, "image_size", None)
        if size is not None and size != self.hparams.image_size:
            raise ConfigError(
                f"model.image_size {self.hparams.image_size} differs from data.image_size {size}; "
                "the annotator resizes other images to model.image_size, so set both"
            )

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> torch.Tensor:
        images, targets = batch
        logits = self(images)
        loss = F.binary_cross_entropy_with_logits(logits.float(), targets)
        self.metrics[split + "_"].update(torch.sigmoid(logits.float()), targets.int())
        self.losses[split + "_"].update(loss.detach(), weight=len(images))
        if split == "train":  # this rank's step value, as every step value: no collective
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, batch_size=len(images), prog_bar=True)
        return loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train")
        # Decided together: a rank that stopped alone would leave the others waiting in DDP.
        if self.trainer.strategy.reduce_boolean_decision(not torch.isfinite(loss).item(), all=False):
            raise TrainingDivergedError(
                f"classifier loss is not finite ({loss.item()} on rank {self.global_rank}) at global step "
                f"{self.global_step} (epoch {self.current_epoch}, "
                f"batch {batch_idx}); lower model.lr or check the data; last.ckpt holds the last good state"
            )
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Probabilities (B, K) in [0, 1]."""
        return torch.sigmoid(self(batch[0]).float())

    def _log_split(self, split: str) -> None:
        # Runs on every rank; compute() syncs the states, so the logged values are already global.
        values = self.metrics[split + "_"].compute()
        for metric, per_attribute in values.items():
            for name, value in zip(self.attributes, per_attribute):
                self.log(f"{split}/{metric}/{name}", value)
            self.log(f"{split}/{metric}_mean", per_attribute.mean(), prog_bar=split != "train")
        self.log(f"{split}/loss", self.losses[split + "_"].compute(), prog_bar=split == "train")
        self.metrics[split + "_"].reset()
        self.losses[split + "_"].reset()

    def on_train_epoch_end(self) -> None:
        self._log_split("train")

    def on_validation_epoch_end(self) -> None:
        self._log_split("val")

    def on_test_epoch_end(self) -> None:
        self._log_split("test")

    def configure_optimizers(self):
        return adamw_cosine(self, self.hparams.lr, self.hparams.weight_decay)

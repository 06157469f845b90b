"""Unsupervised directions (Voynov & Babenko, ICML 2020): a direction matrix and a reconstructor."""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch
import torch.nn.functional as F
from torchmetrics import MeanAbsoluteError
from torchmetrics.classification import MulticlassAccuracy

from latentnav.errors import ConfigError, TrainingDivergedError, check_learning_rate, check_positive
from latentnav.lightning_modules.conditional import batch_classes, hand_classes
from latentnav.lightning_modules.direction_matrix import DirectionMatrix
from latentnav.lightning_modules.frozen_generator import FrozenGeneratorModule
from latentnav.lightning_modules.reconstructor import Reconstructor


class UnsupervisedDirections(FrozenGeneratorModule):
    """Learns A (d x K) and R so that R tells, from (G(z), G(z + eps A e_k)), k and eps.

    Loss = CE(R's logits, k) + shift_weight * |eps_hat - eps|. Batches ``(z, k, eps)`` come from
    :class:`latentnav.datamodules.latent_shifts.LatentShiftsDataModule`; in ``w`` space z is mapped
    first and the shift applies to w (in ``s``, to the style vector). A class-conditional generator: the batches carry a class per latent
    too, ``(z, k, eps, classes)``, drawn from the chosen classes by the datamodule's seeded stream (told the
    choice in ``setup``); both images of a pair are of that class (directions are shared across classes). Logs reconstructor accuracy (RCA) and the mean
    absolute shift error as torchmetrics (train: running per step; val: synced over ranks).

    Args:
        generator, generator_options: the frozen generator (``latentnav.generators.load_generator``).
        space: ``z``, or ``w`` for generators with a mapping network, or StyleGAN2's style space ``s`` (the
            shifts then move style channels; A is (sum of channels) x K).
        num_directions: K.
        direction_type: ``unit``, ``orthonormal`` (a parametrisation) or ``free``.
        reconstructor, reconstructor_width: the trunk (``small_cnn``, ``resnet18``, ``resnet34``).
        shift_weight: lambda of the shift regression term (paper 0.25).
        lr_directions, lr_reconstructor: Adam learning rates of A and R.
        betas: Adam betas of both.
        truncation: passed to the generator's ``synthesize``.
    """

    def __init__(
        self,
        generator: str = "demo",
        generator_options: Optional[dict[str, Any]] = None,
        space: Literal["z", "w", "s"] = "z",
        num_directions: int = 16,
        direction_type: Literal["unit", "orthonormal", "free"] = "unit",
        reconstructor: Literal["small_cnn", "resnet18", "resnet34"] = "small_cnn",
        reconstructor_width: int = 32,
        shift_weight: float = 0.25,
        lr_directions: float = 1e-3,
        lr_reconstructor: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        truncation: float = 1.0,
    ) -> None:
        # Settings first: a typo is one line before the generator is loaded.
        for field, value in (("num_directions", num_directions), ("reconstructor_width", reconstructor_width)):
            check_positive(f"model.{field}", value)
        check_learning_rate("model.lr_directions", lr_directions)
        check_learning_rate("model.lr_reconstructor", lr_reconstructor)
        super().__init__(generator, generator_options)
        self.save_hyperparameters()
        if space == "w+" or space not in self.generator.latent_spaces:
            raise ConfigError(f"model.space: expected one of {', '.join(s for s in self.generator.latent_spaces if s != 'w+')}"
                              f" for {type(self.generator).__name__}, got {space!r}")
        self.space = space
        self.latent_dim = self.generator.latent_shape(space)[0]
        self.direction_matrix = DirectionMatrix(self.latent_dim, num_directions, direction_type)
        self.reconstructor = Reconstructor(num_directions, reconstructor, reconstructor_width)
        self.train_rca = MulticlassAccuracy(num_directions, average="micro")
        self.val_rca = MulticlassAccuracy(num_directions, average="micro")
        self.train_shift_error = MeanAbsoluteError()
        self.val_shift_error = MeanAbsoluteError()

    @property
    def method_name(self) -> str:
        return f"unsupervised ({self.hparams.direction_type}, K={self.hparams.num_directions})"

    def directions(self) -> torch.Tensor:
        """Unit directions (K, d)."""
        return self.direction_matrix.directions()

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule if self._trainer is not None else None
        for field, mine in (("latent_dim", self.generator.z_dim), ("num_directions", self.hparams.num_directions)):
            theirs = getattr(dm, field, None)
            if theirs is not None and theirs != mine:
                what = "the generator's z size" if field == "latent_dim" else "model.num_directions"
                raise ConfigError(f"data.{field} is {theirs}, but {what} is {mine}; set both alike")
        hand_classes(self)

    def pair_images(self, z: torch.Tensor, k: torch.Tensor, eps: torch.Tensor,
                    classes: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """G(latent) and G(latent + eps A e_k), (B, 3, R, R) each (``classes`` (B,): a conditional generator's).

        Two calls, the first without an autograd graph: nothing trainable reaches G(latent), so it needs
        neither stored activations nor a backward pass. (One call on the concatenated batch made the
        whole 2B batch back-propagate through G: 1.29x slower a step on the demo, bench/RESULTS.md.)"""
        latent = self.generator.to_space(z, self.space, classes=classes) if self.space != "z" else z
        with torch.no_grad():
            x0 = self.generator.synthesize(latent, self.space, self.hparams.truncation, classes=classes)
        shifted = latent + self.direction_matrix(k, eps.to(latent.dtype))
        return x0, self.generator.synthesize(shifted, self.space, self.hparams.truncation, classes=classes)

    def _step(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        z, k, eps = batch[:3]
        x0, x1 = self.pair_images(z.float(), k, eps.float(), batch_classes(self.generator, batch))
        logits, eps_hat = self.reconstructor(x0, x1)
        ce = F.cross_entropy(logits.float(), k)
        shift = (eps_hat.float() - eps.float()).abs().mean()
        return ce, shift, logits, eps_hat, k

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        ce, shift, logits, eps_hat, k = self._step(batch)
        loss = ce + self.hparams.shift_weight * shift
        if self.trainer.strategy.reduce_boolean_decision(not torch.isfinite(loss).item(), all=False):
            raise TrainingDivergedError(f"unsupervised loss is not finite at global step {self.global_step}; "
                                        "lower model.lr_directions / model.lr_reconstructor")
        self.train_rca(logits, k)
        self.train_shift_error(eps_hat.float(), batch[2].float())
        self.log_dict({"train/loss": loss, "train/ce": ce, "train/shift_loss": shift}, batch_size=len(k))
        self.log("train/rca", self.train_rca, prog_bar=True, batch_size=len(k))
        self.log("train/shift_error", self.train_shift_error, batch_size=len(k))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        _, _, logits, eps_hat, k = self._step(batch)
        self.val_rca(logits, k)
        self.val_shift_error(eps_hat.float(), batch[2].float())
        self.log("val/rca", self.val_rca, prog_bar=True, batch_size=len(k))
        self.log("val/shift_error", self.val_shift_error, batch_size=len(k))

    def configure_optimizers(self):
        return torch.optim.Adam([
            {"params": self.direction_matrix.parameters(), "lr": self.hparams.lr_directions},
            {"params": self.reconstructor.parameters(), "lr": self.hparams.lr_reconstructor},
        ], betas=tuple(self.hparams.betas))

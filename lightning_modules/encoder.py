"""A trained encoder: image -> latent of the frozen generator, in one forward pass.

Trained on pairs the frozen generator makes on the fly: z from the prior (the batches of
:class:`latentnav.datamodules.latent_shifts.LatentShiftsDataModule`; its k and eps are unused), the
target latent l = G.to_space(z, space) and the image x = G(l), made without an autograd graph. A
class-conditional generator's classes come with the batches too (drawn from the chosen classes by the
datamodule's seeded stream, which the module tells the choice in ``setup``).
Loss = ``latent_weight * mean (E(x) - l)^2 / var(l) + reconstruction_weight * mean (G(E(x)) - x)^2``:
the latent term alone leaves the parts of the latent that G ignores unconstrained and the
reconstruction term alone is slow to start; both together train in minutes on the demo. Gradients
flow through the frozen generator into the encoder's output, never into G's weights.
Its output can be refined by a few projection steps (``Projection(start=...)``; ``latentnav project
--encoder``).
"""

from __future__ import annotations

import math
from typing import Any, Literal, Optional

import torch
from torchmetrics import MeanMetric

from latentnav.errors import ConfigError, TrainingDivergedError, check_learning_rate, check_positive
from latentnav.lightning_modules.backbones import build_backbone
from latentnav.lightning_modules.conditional import batch_classes, hand_classes
from latentnav.lightning_modules.frozen_generator import FrozenGeneratorModule
from latentnav.lightning_modules.projection import psnr


class LatentEncoder(FrozenGeneratorModule):
    """``forward(images (B, 3, R, R) in [-1, 1]) -> latents (B, *latent_shape(space))``.

    Args:
        generator, generator_options: the frozen generator (``latentnav.generators.load_generator``).
        space: ``z``, ``w`` or ``w+``.
        backbone, width: the image trunk (``lightning_modules/backbones.py``), one output per latent number.
        latent_weight, reconstruction_weight: the two loss terms' weights.
        lr, weight_decay: AdamW with a cosine decay over the run.
        stats_samples: prior samples for the latent's mean and variance (the output's centre and scale).
        latent_dim: the data's z size (linked from ``data.latent_dim`` by the CLI), checked against G's.
    Logs ``train/loss``, ``train/latent``, ``train/reconstruction``, ``val/psnr`` (dB, images in [-1, 1]),
    ``val/latent``; TensorBoard gets input | reconstruction pairs of the first validation batch.
    """

    def __init__(self, generator: str = "demo", generator_options: Optional[dict[str, Any]] = None,
                 space: Literal["z", "w", "w+"] = "z", backbone: str = "tiny_resnet", width: int = 32,
                 latent_weight: float = 1.0, reconstruction_weight: float = 1.0, lr: float = 2e-3,
                 weight_decay: float = 1e-4, stats_samples: int = 4000, latent_dim: Optional[int] = None) -> None:
        check_positive("model.width", width)
        check_learning_rate("model.lr", lr)
        for field, value in (("latent_weight", latent_weight), ("reconstruction_weight", reconstruction_weight)):
            if not value >= 0:
                raise ConfigError(f"model.{field}: expected a number >= 0, got {value!r}")
        super().__init__(generator, generator_options)
        # A generator passed in loaded (load_encoder) is not a hyper-parameter: its source is in the checkpoint.
        self.save_hyperparameters(ignore=[] if isinstance(generator, str) else ["generator"])
        if space not in self.generator.latent_spaces:
            raise ConfigError(f"model.space: expected one of {', '.join(self.generator.latent_spaces)} for "
                              f"{type(self.generator).__name__}, got {space!r}")
        if latent_dim is not None and latent_dim != self.generator.z_dim:
            raise ConfigError(f"data.latent_dim is {latent_dim}, but the generator's z has {self.generator.z_dim}; "
                              "set both alike")
        self.space = space
        self.latent_shape = tuple(self.generator.latent_shape(space))
        self.net = build_backbone(backbone, math.prod(self.latent_shape), width=width)
        with torch.no_grad():
            g = torch.Generator().manual_seed(321)
            z = self.generator.sample(stats_samples, space="z", generator=g)
            latents = self.generator.to_space(z, space, classes=self.generator.sample_classes(stats_samples, g)).float()
        self.register_buffer("latent_mean", latents.mean(0))
        self.register_buffer("latent_std", latents.std(0).clamp_min(1e-6))
        self.val_psnr, self.val_latent = MeanMetric(), MeanMetric()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.net(images).view(len(images), *self.latent_shape)
        return self.latent_mean + self.latent_std * out  # the net predicts standardised latents

    def setup(self, stage: str) -> None:
        hand_classes(self)  # a conditional generator's chosen classes, for the datamodule's stream

    def _pairs(self, z: torch.Tensor, classes: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            target = self.generator.to_space(z.float(), self.space, classes=classes).float()
            images = self.generator.synthesize(target, self.space, classes=classes).float()
        return target, images

    def _losses(self, batch) -> dict[str, torch.Tensor]:
        classes = batch_classes(self.generator, batch)
        target, images = self._pairs(batch[0], classes)
        predicted = self(images)
        latent = ((predicted.float() - target) / self.latent_std).square().mean()
        reconstruction = self.generator.synthesize(predicted, self.space, classes=classes).float()
        pixels = (reconstruction - images).square().mean()
        loss = self.hparams.latent_weight * latent + self.hparams.reconstruction_weight * pixels
        return {"loss": loss, "latent": latent, "reconstruction": pixels, "images": images,
                "reconstructions": reconstruction.detach()}

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        out = self._losses(batch)
        if self.trainer.strategy.reduce_boolean_decision(not torch.isfinite(out["loss"]).item(), all=False):
            raise TrainingDivergedError(f"encoder loss is not finite at global step {self.global_step}; lower model.lr")
        n = len(out["images"])
        self.log_dict({"train/loss": out["loss"], "train/latent": out["latent"],
                       "train/reconstruction": out["reconstruction"]}, batch_size=n, prog_bar=False)
        return out["loss"]

    def validation_step(self, batch, batch_idx: int) -> None:
        out = self._losses(batch)
        self.val_psnr.update(psnr(out["reconstructions"], out["images"]))
        self.val_latent.update(out["latent"], len(out["images"]))
        self.log("val/psnr", self.val_psnr, prog_bar=True)
        self.log("val/latent", self.val_latent)
        if batch_idx == 0 and self.trainer.is_global_zero and hasattr(self.logger, "experiment") \
                and hasattr(self.logger.experiment, "add_image"):
            pairs = torch.cat([out["images"][:8], out["reconstructions"][:8]], dim=3)  # input | reconstruction
            grid = torch.cat(list(pairs.clamp(-1, 1).add(1).div(2)), dim=1)  # stacked vertically
            self.logger.experiment.add_image("encoder/input_reconstruction", grid, self.global_step)

    def configure_optimizers(self):
        from latentnav.lightning_modules.schedules import adamw_cosine

        return adamw_cosine(self, self.hparams.lr, self.hparams.weight_decay)


def load_encoder(path: str, generator=None, map_location: str | torch.device = "cpu") -> LatentEncoder:
    """A trained encoder from its training checkpoint (read weights-only), in eval mode. ``generator``: an
    already loaded generator whose sha256 must be the checkpoint's (else it is loaded from the checkpoint's
    hyper-parameters)."""
    from latentnav.safe_load import read_training_checkpoint

    checkpoint = read_training_checkpoint(path)
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    if "space" not in hparams or "backbone" not in hparams:
        raise ConfigError(f"{path}: not a LatentEncoder checkpoint (no space / backbone hyper-parameters)")
    saved = checkpoint.get("generator_identity") or {}
    import inspect

    accepted = set(inspect.signature(LatentEncoder.__init__).parameters) - {"self"}
    options = {k: v for k, v in hparams.items() if k in accepted}
    def check(current: dict) -> None:
        if saved.get("sha256") != current.get("sha256"):
            raise ConfigError(f"{path}: encoder trained for generator {saved.get('source')} (sha256 "
                              f"{str(saved.get('sha256'))[:12]}), not {current.get('source')} "
                              f"(sha256 {str(current.get('sha256'))[:12]})")

    if generator is not None:
        check(generator.identity)  # before building: a wrong generator's sizes would fail less clearly
        options["generator"] = generator  # used as it is, not loaded again
    encoder = LatentEncoder(**options)
    check(encoder.generator.identity)
    weights = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith(LatentEncoder.PREFIX)}
    missing, unexpected = encoder.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.startswith(LatentEncoder.PREFIX)]
    if missing or unexpected:
        raise ConfigError(f"{path}: encoder weights do not fit (missing {missing[:3]}, unexpected {unexpected[:3]})")
    # A given generator is shared with the caller: the encoder joins it on its device rather than moving it.
    return encoder.eval().to(generator.device if generator is not None else map_location)

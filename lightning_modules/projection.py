"""GAN inversion by optimisation: the latent whose image matches a given image, as a ``predict`` loop.

For a batch of images x (B, 3, R, R) in [-1, 1], Adam moves latents l (B, *latent_shape(space)) to
minimise ``mean (G(l) - x)^2 + perceptual_weight * mean (F(G(l)) - F(x))^2`` per image, with F a
feature network the user supplies (TorchScript, images -> (B, D); nothing is downloaded). As in
the StyleGAN2 projector (Karras et al. 2020): the start is the mean latent of the space, the learning
rate ramps up over the first ``lr_rampup`` of the steps and down (cosine) over the last
``lr_rampdown``, and Gaussian noise of ``noise_start`` x the latents' spread, fading out by
``noise_ramp`` of the steps, is added to the latent fed to G early on (it keeps the search from
settling in the first basin). For StyleGAN2 the per-layer noise maps are optimised per image as well,
with the projector's regularisation (no spatial autocorrelation at any scale) and renormalised after
every step; they are returned and saved with the latents (``noise``), and the edit command renders
with them. Each image's loss depends on its own variables only and Adam is elementwise, so a batch
gives the images' individual results.

A class-conditional generator projects image i in class ``generator.classes_at([i])`` (of the chosen classes,
the i % n-th); the mean latent and spread are taken over samples of all chosen classes.

``predict_step`` returns ``{"rows": (b,), "latents": (b, *shape) float32 CPU, "reconstructions": uint8
(b, R, R, 3), "psnr": (b,) dB (data range 2), "ssim": (b,)}`` and, with optimised noise, ``"noise"``: a
list of (b, 1, r, r) maps.
"""

from __future__ import annotations

import math
from typing import Optional

import pytorch_lightning as pl
import torch

from latentnav.images import to_uint8


def psnr(reconstructions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [-1, 1] (data range 2): (B,)."""
    mse = (reconstructions.float().clamp(-1, 1) - targets.float()).square().flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-12))


def ssim(reconstructions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (torchmetrics, Gaussian window, data range 2): (B,)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    kernel = min(11, targets.shape[-1] - (1 - targets.shape[-1] % 2))  # odd, at most the image
    return structural_similarity_index_measure(reconstructions.float().clamp(-1, 1), targets.float(), data_range=2.0,
                                               kernel_size=kernel, reduction="none")


def lr_at(t: float, lr: float, rampup: float, rampdown: float) -> float:
    """The learning rate at progress ``t`` in [0, 1]: linear warm-up over ``rampup``, cosine decay over
    the last ``rampdown``."""
    ramp = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return lr * ramp * (min(1.0, t / rampup) if rampup > 0 else 1.0)


def noise_regularisation(noises: list[torch.Tensor]) -> torch.Tensor:
    """Per image (B,): the StyleGAN2 projector's penalty on spatial structure in noise maps (B, 1, r, r):
    the squared autocorrelation at a one-pixel shift both ways, summed over the map and its 2x
    average-pooled versions down to 8 px, so that the maps cannot carry the image's content."""
    total = 0.0
    for n in noises:
        while True:
            total = total + (n * n.roll(1, dims=3)).mean((1, 2, 3)).square() + (n * n.roll(1, dims=2)).mean((1, 2, 3)).square()
            if n.shape[-1] <= 8:
                break
            n = torch.nn.functional.avg_pool2d(n, 2)
    return total


class Projection(pl.LightningModule):
    """Projects batches of images into ``space`` of the frozen ``generator`` (see the module docstring).

    Args:
        generator: a loaded, frozen ``FrozenGenerator``.
        space: ``z``, ``w`` or ``w+`` (``w``/``w+`` for StyleGAN2).
        steps: Adam steps per batch.
        lr: peak learning rate.
        lr_rampup, lr_rampdown: fractions of the steps for the warm-up and the cosine decay.
        noise_start, noise_ramp: latent noise at the start (x the latents' spread) and the fraction of the
            steps over which it fades (quadratically) to 0.
        perceptual: a frozen feature network (``load_identity_embedding``'s contract: images -> (B, D)) or None.
        perceptual_weight: its loss weight.
        stats_samples: prior samples for the space's mean and spread.
        encoder: a trained ``LatentEncoder`` (frozen here) whose output is the start; ``steps`` 0 = its output
            as it is (no refinement).
        noise_regularize: for generators with noise inputs (StyleGAN2): the per-layer noise maps are optimised
            per image too, with this weight on :func:`noise_regularisation` (the projector's 1e5); 0 = keep
            the generator's stored maps.
    Batches: ``{"indices": (b,), "images": (b, 3, R, R) in [-1, 1]}``, optionally ``"start"`` (b, *shape):
    latents to start from (an encoder's guess) instead of the mean.
    """

    def __init__(self, generator, space: str = "w+", steps: int = 300, lr: float = 0.1, lr_rampup: float = 0.05,
                 lr_rampdown: float = 0.25, noise_start: float = 0.05, noise_ramp: float = 0.75,
                 perceptual=None, perceptual_weight: float = 1.0, stats_samples: int = 2000, encoder=None,
                 noise_regularize: float = 1e5) -> None:
        super().__init__()
        from latentnav.errors import ConfigError, check_positive

        if encoder is None or steps != 0:  # an encoder alone (steps 0) needs no optimisation
            check_positive("steps", steps)
        if encoder is not None and getattr(encoder, "space", space) != space:
            raise ConfigError(f"encoder: it predicts {encoder.space} latents, the projection is into {space}")
        check_positive("lr", lr)
        self.encoder, self.noise_regularize = encoder, float(noise_regularize)
        generator.latent_shape(space)  # an unknown space is one line
        self.generator, self.space, self.perceptual = generator, space, perceptual
        self.steps, self.lr, self.lr_rampup, self.lr_rampdown = int(steps), float(lr), lr_rampup, lr_rampdown
        self.noise_start, self.noise_ramp, self.perceptual_weight = noise_start, noise_ramp, perceptual_weight
        self.stats_samples = int(stats_samples)
        with torch.no_grad():
            g = torch.Generator().manual_seed(123)
            z = generator.sample(stats_samples, space="z", generator=g)
            latents = generator.to_space(z, space, classes=generator.sample_classes(stats_samples, generator=g))
            latents = latents.float().cpu()
        mean = latents.mean(0)
        self.register_buffer("mean", mean, persistent=False)
        # The spread of one latent vector (for w+, of one layer's w, as the StyleGAN2 projector's noise uses).
        vectors = latents.reshape(-1, latents.shape[-1])
        self.spread = float((vectors - vectors.mean(0)).square().sum(1).mean().sqrt())

    def settings(self) -> dict:
        """What decides an image's result (with the generator and the image): a resumed projection
        reuses finished images only under the same settings."""
        return {"space": self.space, "steps": self.steps, "lr": self.lr, "lr_rampup": float(self.lr_rampup),
                "lr_rampdown": float(self.lr_rampdown), "noise_start": float(self.noise_start),
                "noise_ramp": float(self.noise_ramp), "perceptual": getattr(self.perceptual, "sha256", None),
                "perceptual_weight": float(self.perceptual_weight), "noise_regularize": self.noise_regularize,
                "stats_samples": self.stats_samples,
                **({"classes": list(self.generator.class_choice)} if self.generator.conditional else {})}

    def loss(self, images: torch.Tensor, targets: torch.Tensor, target_features: Optional[torch.Tensor]) -> torch.Tensor:
        """Per-image loss (B,): pixel MSE + perceptual_weight * feature MSE."""
        loss = (images - targets).square().flatten(1).mean(1)
        if target_features is not None:
            loss = loss + self.perceptual_weight * (self.perceptual(images) - target_features).square().flatten(1).mean(1)
        return loss

    def project(self, targets: torch.Tensor, start: Optional[torch.Tensor] = None,
                rows: Optional[torch.Tensor] = None,
                classes: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(latents (B, *shape), noise maps) whose images match ``targets`` (B, 3, R, R) in [-1, 1]. ``rows``
        (B,): the images' indices, which seed each one's random draws (default 0 .. B - 1), so that an image
        gets the same draws in any batch and on any rank (its result then differs only by the convolutions'
        rounding in another batch composition, which Adam can enlarge on near-flat components). The noise maps ((B, 1, r, r) per layer) are
        optimised with the latents for a generator that has noise inputs and ``noise_regularize`` > 0
        (StyleGAN2), else the list is empty. ``classes`` (B,): a class-conditional generator's class of each
        image (default ``generator.classes_at(rows)``)."""
        targets = targets.to(self.device, torch.float32)
        b = len(targets)
        rows = torch.arange(b) if rows is None else torch.as_tensor(rows).reshape(-1).cpu()
        classes = self.generator.classes_at(rows) if classes is None else classes
        streams = [torch.Generator().manual_seed(int(r)) for r in rows]
        maps = self.generator.noise_maps() if self.noise_regularize > 0 else []
        # Outside inference mode whatever loop calls this (a Trainer with inference_mode=True included).
        with torch.enable_grad(), torch.inference_mode(False):
            targets = targets.clone()
            init = self.mean.clone().expand(b, *self.mean.shape) if start is None else start.to(self.device, torch.float32).clone()
            latents = init.clone().requires_grad_(True)
            noises = [torch.stack([torch.randn(m.shape[1:], generator=s) for s in streams]).to(self.device).requires_grad_(True)
                      for m in maps]
            optimiser = torch.optim.Adam([latents, *noises], lr=self.lr, betas=(0.9, 0.999))
            target_features = self.perceptual(targets).detach() if self.perceptual is not None else None
            for step in range(self.steps):
                t = step / self.steps
                for group in optimiser.param_groups:
                    group["lr"] = lr_at(t, self.lr, self.lr_rampup, self.lr_rampdown)
                scale = self.spread * self.noise_start * max(0.0, 1.0 - t / self.noise_ramp) ** 2 if self.noise_ramp else 0.0
                noise = 0.0
                if scale > 0:  # drawn on the CPU per image: the same on every device, batch and rank
                    noise = torch.stack([torch.randn(latents.shape[1:], generator=s) for s in streams]).to(self.device) * scale
                images = (self.generator.synthesize_with_noise(latents + noise, self.space, noises, classes=classes)
                          if noises else self.generator.synthesize(latents + noise, self.space, classes=classes))
                loss = self.loss(images.float(), targets, target_features)
                if noises:
                    loss = loss + self.noise_regularize * noise_regularisation(noises)
                optimiser.zero_grad(set_to_none=True)
                loss.sum().backward()
                optimiser.step()
                with torch.no_grad():  # keep every map a unit Gaussian per image (the StyleGAN2 projector's rule)
                    for n in noises:
                        n.sub_(n.mean((1, 2, 3), keepdim=True)).div_(n.std((1, 2, 3), keepdim=True).clamp_min(1e-8))
        return latents.detach(), [n.detach() for n in noises]

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        targets = batch["images"].to(self.device, torch.float32)
        start = batch.get("start")
        if start is None and self.encoder is not None:
            with torch.no_grad():
                start = self.encoder(targets).float()
        latents, noises = (start.to(self.device), []) if self.steps == 0 else \
            self.project(targets, start, batch["indices"])
        classes = self.generator.classes_at(batch["indices"])
        with torch.no_grad():
            images = (self.generator.synthesize_with_noise(latents, self.space, noises, classes=classes) if noises
                      else self.generator.synthesize(latents, self.space, classes=classes)).float()
        out = {"rows": batch["indices"].cpu(), "latents": latents.float().cpu(), "reconstructions": to_uint8(images),
               "psnr": psnr(images, targets).cpu(), "ssim": ssim(images, targets).cpu()}
        if noises:
            out["noise"] = [n.float().cpu() for n in noises]
        return out

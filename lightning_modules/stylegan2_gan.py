"""Trains the bundled ``demo_stylegan2``: the project's StyleGAN2 (the port's generator) on the demo faces.

StyleGAN2's recipe (Karras et al. 2020) at demo scale: the residual discriminator, the non-saturating logistic
loss with lazy R1 on reals, style mixing, a generator EMA, and optionally the lazy path-length regulariser.
The losses, R1, EMA, learning-rate decay and per-rank latents are the loop shared with the demo DCGAN
(:class:`latentnav.lightning_modules.gan.AdversarialTraining`). The EMA generator is exported as a rosinality
``g_ema`` checkpoint with its ``latent_avg`` (``latentnav generator export``), so everything that loads a
user's StyleGAN2 loads it.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from latentnav.errors import ConfigError, check_learning_rate
from latentnav.generators.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from latentnav.lightning_modules.gan import AdversarialTraining
from latentnav.lightning_modules.stylegan2_discriminator import StyleGAN2Discriminator, widths_per_resolution


class StyleGAN2GAN(AdversarialTraining):
    """StyleGAN2 generator + residual discriminator on (B, 3, R, R) images in [-1, 1].

    Args:
        z_dim: size of z and w (the port's ``style_dim``); z ~ N(0, I).
        resolution: image side R (a power of two >= 8).
        mapping_layers: depth of the mapping network (the port's ``n_mlp``; learning rate x 0.01, as the port).
        g_channels: generator widths per resolution 4, 8, ..., R.
        d_channels: discriminator widths per resolution R, R/2, ..., 4.
        mbstd_group: group size of the discriminator's minibatch standard deviation (0: off).
        lr, beta1, beta2: Adam for both networks.
        r1_gamma: weight of the R1 penalty on real images; 0 disables it.
        r1_every: apply R1 every this many iterations (lazy regularisation, scaled by the interval).
        mixing_prob: probability that a fake's w+ switches from one w to another at a random layer.
        pl_weight: weight of the path-length regulariser (0: off, the default: it costs a double backward).
        pl_every: apply it every this many iterations (lazy, scaled by the interval).
        pl_batch_shrink: it runs on batch // pl_batch_shrink fresh samples.
        pl_decay: how fast its running mean of path lengths follows (``pl_mean`` lerps by this much).
        ema_beta: decay of the generator's moving average per iteration.
        sample_seed: seed of the fixed latents behind the TensorBoard sample grid.
        lr_decay_start, lr_decay_iterations, lr_final_ratio: linear decay of both learning rates (as DemoGAN).
    """

    def __init__(
        self,
        z_dim: int = 64,
        resolution: int = 32,
        mapping_layers: int = 4,
        g_channels: tuple[int, ...] = (128, 64, 32, 32),
        d_channels: tuple[int, ...] = (32, 32, 64, 128),
        mbstd_group: int = 4,
        lr: float = 2e-3,
        beta1: float = 0.0,
        beta2: float = 0.99,
        r1_gamma: float = 0.01,
        r1_every: int = 16,
        mixing_prob: float = 0.9,
        pl_weight: float = 0.0,
        pl_every: int = 4,
        pl_batch_shrink: int = 2,
        pl_decay: float = 0.01,
        ema_beta: float = 0.998,
        sample_seed: int = 0,
        lr_decay_start: Optional[int] = None,
        lr_decay_iterations: int = 4000,
        lr_final_ratio: float = 0.1,
    ) -> None:
        super().__init__()
        check_learning_rate("model.lr", lr)
        g_channels = widths_per_resolution(resolution, g_channels, "model.g_channels", f"4 to {resolution}")
        widths_per_resolution(resolution, d_channels, "model.d_channels", f"{resolution} to 4")
        if not 0.0 <= mixing_prob <= 1.0:
            raise ConfigError(f"model.mixing_prob: expected a probability in [0, 1], got {mixing_prob}")
        self.save_hyperparameters()
        self.config = StyleGAN2Config(size=resolution, style_dim=z_dim, n_mlp=mapping_layers,
                                      channels=tuple(g_channels))
        self.generator = StyleGAN2Generator(self.config)
        self.discriminator = StyleGAN2Discriminator(resolution, tuple(d_channels), mbstd_group)
        self._finish_networks(z_dim, sample_seed)
        self.register_buffer("pl_mean", torch.zeros(()))

    # ----------------------------------------------------------------- latents
    def mixed_styles(self, n: int, generator: Optional[StyleGAN2Generator] = None) -> torch.Tensor:
        """w+ (n, n_latent, z_dim) of fresh z: with probability ``mixing_prob`` a sample's rows from a random
        crossover layer in [1, n_latent) on come from a second z (style mixing regularisation)."""
        G = self.generator if generator is None else generator
        layers = self.config.n_latent
        w = G.mapping(self._z(n))[:, None].repeat(1, layers, 1)
        if self.hparams.mixing_prob <= 0:
            return w
        other = G.mapping(self._z(n))[:, None]
        mixed = self._uniform(n) < self.hparams.mixing_prob
        cut = torch.where(mixed, (self._uniform(n) * (layers - 1)).long() + 1, torch.full_like(mixed, layers, dtype=torch.long))
        rows = torch.arange(layers, device=self.device)[None, :] >= cut[:, None]
        return torch.where(rows[..., None], other, w)

    def fake_images(self, n: int) -> torch.Tensor:
        return self.generator.synthesis(self.mixed_styles(n), [None] * self.config.num_layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Images of the EMA generator with its stored noise (as the exported file renders them):
        z (B, z_dim) -> (B, 3, R, R) in [-1, 1]."""
        G = self.generator_ema
        w = G.mapping(z)[:, None].repeat(1, self.config.n_latent, 1)
        return G.synthesis(w, G.stored_noise())

    # ----------------------------------------------------------------- path length
    def generator_regulariser(self, n: int) -> Optional[torch.Tensor]:
        if self.hparams.pl_weight <= 0 or self.iteration % self.hparams.pl_every:
            return None
        penalty = self.path_length_penalty(max(1, n // self.hparams.pl_batch_shrink))
        return self.hparams.pl_weight * self.hparams.pl_every * penalty

    def path_length_penalty(self, n: int) -> torch.Tensor:
        """(|J_w^T y| - a)^2 averaged over ``n`` fresh samples, y ~ N(0, I) / sqrt(R^2) image-space noise and
        a the running mean of the lengths (updated here): it makes a fixed step in w change the image by a
        fixed amount everywhere (StyleGAN2 Sec. 3.2)."""
        styles = self.mixed_styles(n)
        images = self.generator.synthesis(styles, [None] * self.config.num_layers)
        noise = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
        (grad,) = torch.autograd.grad((images * noise).sum(), styles, create_graph=True)
        lengths = grad.float().pow(2).sum(2).mean(1).sqrt()
        with torch.no_grad():
            self.pl_mean.lerp_(lengths.mean(), self.hparams.pl_decay)
        return (lengths - self.pl_mean).pow(2).mean()

    # ----------------------------------------------------------------- export
    @torch.no_grad()
    def mean_w(self, samples: int = 10000) -> torch.Tensor:
        """(z_dim,) mean of the EMA mapping over ``samples`` seeded z: the exported ``latent_avg``."""
        z = torch.randn(samples, self.hparams.z_dim, generator=torch.Generator().manual_seed(0)).to(self.device)
        return torch.cat([self.generator_ema.mapping(chunk) for chunk in z.split(1000)]).mean(0)

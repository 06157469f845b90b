"""The demo GAN's networks: a small DCGAN-style generator and a discriminator without batch-norm.

Generator: z (B, z_dim) ~ N(0, I) -> images (B, 3, R, R) in [-1, 1], R = 4 * 2**num_up.
Its first layer is a Linear acting on z, so its weight (out x z_dim) is the matrix that
closed-form methods (SeFa) factorise.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class DCGANGenerator(nn.Module):
    """Linear to a 4x4 map, then ``num_up`` blocks of (nearest upsample, 3x3 conv, LeakyReLU).

    About 0.27 M parameters with the defaults (z_dim 64, 32 px).
    """

    def __init__(self, z_dim: int = 64, resolution: int = 32, channels: tuple[int, ...] = (128, 64, 32, 32)) -> None:
        super().__init__()
        num_up = (resolution // 4).bit_length() - 1
        if resolution < 8 or 4 * 2**num_up != resolution or len(channels) < num_up + 1:
            raise ValueError(f"DCGANGenerator: resolution must be 4 * 2**k (k >= 1, k < {len(channels)}), got {resolution}")
        self.z_dim = z_dim
        self.resolution = resolution
        self.channels = tuple(channels)
        self.fc = nn.Linear(z_dim, channels[0] * 16)
        blocks: list[nn.Module] = []
        for i in range(num_up):
            blocks += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(channels[i], channels[i + 1], 3, padding=1),
                nn.LeakyReLU(0.2),
                nn.Conv2d(channels[i + 1], channels[i + 1], 3, padding=1) if i == 0 else nn.Identity(),
                nn.LeakyReLU(0.2) if i == 0 else nn.Identity(),
            ]
        self.blocks = nn.Sequential(*blocks)
        self.to_rgb = nn.Conv2d(channels[num_up], 3, 3, padding=1)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.act(self.fc(z)).view(len(z), self.channels[0], 4, 4)
        return torch.tanh(self.to_rgb(self.blocks(x)))


class DCGANDiscriminator(nn.Module):
    """Strided 3x3 convs with LeakyReLU and no normalisation, then a linear logit.

    Batch-norm is left out on purpose: with it, a plain DCGAN mode-collapsed on the demo
    faces, and the R1 penalty needs per-sample gradients that BN would mix.
    """

    def __init__(self, resolution: int = 32, channels: tuple[int, ...] = (32, 64, 128, 256), mbstd_group: int = 0,
                 pack: int = 1) -> None:
        super().__init__()
        num_down = (resolution // 4).bit_length() - 1
        self.pack = pack
        layers: list[nn.Module] = [nn.Conv2d(3 * pack, channels[0], 3, padding=1), nn.LeakyReLU(0.2)]
        for i in range(num_down):
            layers += [nn.Conv2d(channels[i], channels[i + 1], 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.mbstd_group = mbstd_group
        self.head = nn.Linear((channels[num_down] + (1 if mbstd_group else 0)) * 16, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, R, R) in [-1, 1] -> logits (B // pack,).

        ``pack`` > 1 (PacGAN): groups of ``pack`` samples are judged together, stacked on
        channels, so a generator that drops a mode (hats) makes packs that look too alike.
        """
        if self.pack > 1:
            n, c, h, w = images.shape
            if n % self.pack:
                raise ValueError(f"discriminator: batch {n} is not a multiple of pack={self.pack}")
            images = images.reshape(n // self.pack, c * self.pack, h, w)
        x = self.features(images)
        if self.mbstd_group:
            x = minibatch_stddev(x, self.mbstd_group)
        return self.head(x.flatten(1)).squeeze(1)


def minibatch_stddev(x: torch.Tensor, group: int) -> torch.Tensor:
    """Append one channel: the feature standard deviation across groups of samples.

    A generator that drops modes (e.g. never draws hats) makes batches less varied than
    real ones; this lets the discriminator see it (StyleGAN's minibatch standard deviation).
    """
    n, c, h, w = x.shape
    g = math.gcd(group, n)
    std = x.view(g, -1, c, h, w).float().var(dim=0, unbiased=False).add(1e-8).sqrt().mean(dim=(1, 2, 3))
    std = std.to(x.dtype).view(-1, 1, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, std], dim=1)

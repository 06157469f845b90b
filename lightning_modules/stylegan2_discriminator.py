"""StyleGAN2's residual discriminator (Karras et al. 2020, Fig. 7c), for training ``demo_stylegan2``.

Written from the paper: from-RGB 1x1, then per resolution a residual block (3x3 conv; blur then a strided 3x3
conv; a blurred strided 1x1 skip; the sum scaled by 1/sqrt(2)) down to 4x4, the minibatch standard deviation,
a 3x3 conv, and two fully connected layers to one logit. Every weight has an equalised learning rate (stored
N(0, 1), scaled by 1/sqrt(fan_in) when used) and the leaky ReLUs carry the gain sqrt(2), as in the generator.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from latentnav.errors import ConfigError
from latentnav.generators.dcgan import minibatch_stddev
from latentnav.generators.stylegan2 import Blur, EqualLinear, fused_leaky_relu


def widths_per_resolution(resolution: int, widths: Sequence[int], field: str, order: str) -> list[int]:
    """``widths`` as ints, one per resolution 4 .. ``resolution`` (a power of two >= 8), or one line naming
    ``field`` (``order``: the resolutions they stand for, as the user reads them)."""
    levels = int(math.log2(resolution)) - 1 if resolution >= 1 else 0
    if resolution < 8 or 2 ** (levels + 1) != resolution:
        raise ConfigError(f"{field}: the resolution must be a power of two >= 8, got {resolution}")
    if len(widths) != levels:
        raise ConfigError(f"{field}: expected {levels} widths (resolutions {order}), got {len(widths)}")
    return [int(c) for c in widths]


class EqualConv2d(nn.Module):
    """Conv with an equalised learning rate; ``down`` 2 blurs with ``blur_kernel`` and then strides by 2
    (the FIR low-pass before subsampling keeps the discriminator from aliasing)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, down: bool = False, bias: bool = True,
                 activate: bool = True, blur_kernel: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = 1 / math.sqrt(in_ch * kernel_size**2)
        self.activate = activate
        self.down = down
        if down:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2, p // 2))
            self.padding = 0
        else:
            self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = self.blur(x)
        out = F.conv2d(x, self.weight * self.scale, stride=2 if self.down else 1, padding=self.padding)
        if self.activate:
            bias = self.bias if self.bias is not None else out.new_zeros(out.shape[1])
            return fused_leaky_relu(out, bias)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)


class ResidualBlock(nn.Module):
    """(B, in, r, r) -> (B, out, r/2, r/2)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = EqualConv2d(in_ch, in_ch, 3)
        self.conv2 = EqualConv2d(in_ch, out_ch, 3, down=True)
        self.skip = EqualConv2d(in_ch, out_ch, 1, down=True, bias=False, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class StyleGAN2Discriminator(nn.Module):
    """Images (B, 3, R, R) in [-1, 1] -> logits (B,).

    Args:
        resolution: R, a power of two >= 8.
        channels: widths per resolution R, R/2, ..., 4 (log2(R) - 1 entries).
        mbstd_group: samples per group of the minibatch standard deviation (its gcd with the batch is used).
    """

    def __init__(self, resolution: int = 32, channels: Sequence[int] = (64, 128, 128, 128), mbstd_group: int = 4) -> None:
        super().__init__()
        channels = widths_per_resolution(resolution, channels, "discriminator channels", f"{resolution} to 4")
        self.from_rgb = EqualConv2d(3, channels[0], 1)
        self.blocks = nn.Sequential(*[ResidualBlock(a, b) for a, b in zip(channels[:-1], channels[1:])])
        self.mbstd_group = mbstd_group
        last = channels[-1]
        self.final_conv = EqualConv2d(last + (1 if mbstd_group else 0), last, 3)
        self.final_linear = nn.Sequential(EqualLinear(last * 16, last, activation=True), EqualLinear(last, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.from_rgb(images))
        if self.mbstd_group:
            x = minibatch_stddev(x, self.mbstd_group)
        return self.final_linear(self.final_conv(x).flatten(1)).squeeze(1)

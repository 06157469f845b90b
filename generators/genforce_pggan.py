"""PGGAN (Karras et al., ICLR 2018) generator in genforce's state-dict layout (genforce, SeFa, ``.pth``).

Written from the layout of genforce's published checkpoints and the paper, in plain torch. The layout
(what :func:`infer_pggan_config` reads; genforce and SeFa name and shape every tensor alike)::

    lod                          () level of detail; 0 = full resolution (published checkpoints)
    layer0.weight / .bias        (C4, z + labels, 4, 4): the first layer, a 4x4 convolution of the
                                 latent seen as a 1x1 map with padding 3 (the paper's dense layer)
    layer{2b}.weight / .bias     block b >= 1: (C, C_prev, 3, 3) after a 2x nearest upsampling, or
                                 (C_prev, C, 3, 3) for the fused transposed convolution (fused_scale)
    layer{2b+1}.weight / .bias   (C, C, 3, 3)
    output{b}.weight / .bias     (3, C, 1, 1) to-RGB of block b (resolution 4 * 2**b)

Every convolution scales its weight at run time (equalised learning rate: gain / sqrt(fan_in), gain
sqrt(2), 1 for to-RGB) and normalises its input per pixel across channels first (pixel norm, eps 1e-8);
leaky ReLU 0.2 follows every layer but to-RGB. The output is linear, in [-1, 1] by training
(``final_tanh`` is a build flag of genforce's class, off in every published checkpoint; it is not in the
file). A conditional PGGAN concatenates a label vector (one-hot class) to the pixel-normalised latent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from latentnav.errors import ConfigError, DataFormatError

EPS = 1e-8


def pixel_norm(x: torch.Tensor) -> torch.Tensor:
    """x divided by the root-mean-square over channels (dim 1), per sample and pixel."""
    return x / torch.sqrt(x.pow(2).mean(dim=1, keepdim=True) + EPS)


def nearest_up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def progressive_image(image: Optional[torch.Tensor], x: torch.Tensor, to_image, lod: float, here: int):
    """The image after block ``here`` levels below the top, at level of detail ``lod`` (progressive growing):
    this block's own image when it is the finest drawn, a blend with the coarser one (upsampled) while it
    fades in, and the coarser image upsampled once the finest level drawn is coarser than this block."""
    if here - 1 < lod <= here:
        return to_image(x)
    if here < lod < here + 1:
        alpha = math.ceil(lod) - lod
        return to_image(x) * alpha + nearest_up(image) * (1 - alpha)
    if lod >= here + 1:
        return nearest_up(image)
    return image


def fused_up_kernel(weight: torch.Tensor) -> torch.Tensor:
    """A 3x3 kernel (a, b, 3, 3) turned into the 4x4 kernel whose stride-2 transposed convolution
    (padding 1) equals nearest 2x upsampling followed by the 3x3 convolution: the sum of its four
    one-pixel shifts."""
    p = F.pad(weight, (1, 1, 1, 1))
    return p[:, :, 1:, 1:] + p[:, :, :-1, 1:] + p[:, :, 1:, :-1] + p[:, :, :-1, :-1]


@dataclass
class PGGANConfig:
    resolution: int
    z_dim: int
    channels: list[int]                 # per block, 4 px first
    label_size: int = 0
    image_channels: int = 3
    fused_scale: bool = False
    use_wscale: bool = True
    final_tanh: bool = False
    notes: dict = field(default_factory=dict)

    @property
    def blocks(self) -> int:
        return len(self.channels)


class _Conv(nn.Module):
    """pixel norm -> (upsample) -> scaled convolution + bias -> (leaky ReLU)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, padding: int, gain: float, use_wscale: bool,
                 up: bool = False, fused: bool = False, act: bool = True) -> None:
        super().__init__()
        shape = (in_ch, out_ch, kernel, kernel) if (up and fused) else (out_ch, in_ch, kernel, kernel)
        self.weight = nn.Parameter(torch.zeros(shape))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.scale = gain / math.sqrt(in_ch * kernel * kernel) if use_wscale else 1.0
        self.padding, self.up, self.fused, self.act = padding, up, fused, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pixel_norm(x)
        w = self.weight * self.scale
        if self.up and self.fused:
            x = F.conv_transpose2d(x, fused_up_kernel(w), self.bias, stride=2, padding=1)
        else:
            if self.up:
                x = nearest_up(x)
            x = F.conv2d(x, w, self.bias, padding=self.padding)
        return F.leaky_relu(x, 0.2) if self.act else x


class GenforcePGGAN(nn.Module):
    """genforce's PGGAN generator: ``forward(z, labels=None)`` -> images (B, 3, R, R)."""

    def __init__(self, config: PGGANConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        gain = math.sqrt(2.0)
        self.register_buffer("lod", torch.zeros(()))
        prev = c.z_dim + c.label_size
        for b, ch in enumerate(c.channels):
            if b == 0:
                first = _Conv(prev, ch, 4, 3, gain, c.use_wscale)
            else:
                first = _Conv(prev, ch, 3, 1, gain, c.use_wscale, up=True, fused=c.fused_scale)
            self.add_module(f"layer{2 * b}", first)
            self.add_module(f"layer{2 * b + 1}", _Conv(ch, ch, 3, 1, gain, c.use_wscale))
            self.add_module(f"output{b}", _Conv(ch, c.image_channels, 1, 0, 1.0, c.use_wscale, act=False))
            prev = ch

    def forward(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        c = self.config
        x = pixel_norm(z)
        if c.label_size:
            x = torch.cat([x, labels.to(x)], dim=1)
        x = x[:, :, None, None]
        lod = float(self.lod)
        top = c.blocks - 1  # index of the final block
        image = None
        for b in range(c.blocks):
            here = top - b  # this block's level of detail
            if lod < here + 1:
                x = getattr(self, f"layer{2 * b + 1}")(getattr(self, f"layer{2 * b}")(x))
            image = progressive_image(image, x, getattr(self, f"output{b}"), lod, here)
        return torch.tanh(image) if c.final_tanh else image

    def first_layer_matrix(self) -> torch.Tensor:
        """The (C4 * 16, z_dim) matrix A of the first layer: its 4x4 output map before the bias and the
        activation is A @ z (z pixel-normalised, label columns left out), rows ordered (channel, y, x).
        The latent sits at the centre tap of a padding-3 convolution, so output (y, x) reads kernel tap
        (3 - y, 3 - x): the kernel flipped."""
        w = self.layer0.weight.detach() * self.layer0.scale
        w = w[:, : self.config.z_dim].flip(2, 3)
        return w.permute(0, 2, 3, 1).reshape(-1, self.config.z_dim).clone()


def infer_pggan_config(state: dict, source: str, label_size: int = 0, fused_scale: Optional[bool] = None,
                       use_wscale: bool = True, final_tanh: bool = False) -> PGGANConfig:
    """The configuration of a genforce PGGAN state dict (genforce files carry no build arguments).

    From the file: resolution (number of to-RGB layers), channels, image channels, and fused_scale when
    an upsampling layer's in and out channels differ. Not in the file, so given (genforce's defaults):
    ``label_size`` (the first layer's input is z and the labels together), ``fused_scale`` when every
    upsampling layer has as many in as out channels (default False, as genforce's converter builds
    every published PGGAN), ``use_wscale`` (True), ``final_tanh`` (False)."""
    blocks = 0
    while f"output{blocks}.weight" in state:
        blocks += 1
    needed = [f"layer{i}.{p}" for i in range(2 * blocks) for p in ("weight", "bias")]
    needed += [f"output{b}.bias" for b in range(blocks)] + ["lod"]
    missing = [k for k in needed if k not in state]
    if blocks == 0 or missing:
        raise DataFormatError(f"{source}: not a genforce PGGAN state dict (missing {(missing or ['output0.weight'])[0]})")
    if blocks < 2:
        raise DataFormatError(f"{source}: genforce PGGAN needs at least 8 px (2 blocks); this one has 1")
    channels = [int(state[f"layer{2 * b + 1}.weight"].shape[0]) for b in range(blocks)]
    first = state["layer0.weight"]
    if first.ndim != 4 or tuple(first.shape[2:]) != (4, 4):
        raise DataFormatError(f"{source}: layer0.weight has shape {tuple(first.shape)}, expected (C, z, 4, 4)")
    z_in = int(first.shape[1])
    if not 0 <= label_size < z_in:
        raise ConfigError(f"label_size: expected 0..{z_in - 1} (layer0 takes {z_in} = z + labels inputs), got {label_size}")
    notes = {}
    fused_seen = set()
    for b in range(1, blocks):
        shape = tuple(state[f"layer{2 * b}.weight"].shape[:2])
        plain, fused = (channels[b], channels[b - 1]), (channels[b - 1], channels[b])
        if plain != fused:
            if shape not in (plain, fused):
                raise DataFormatError(f"{source}: layer{2 * b}.weight has shape {tuple(state[f'layer{2 * b}.weight'].shape)}; "
                                      f"expected {plain} or {fused} in its first two dimensions")
            fused_seen.add(shape == fused)
    if len(fused_seen) > 1:
        raise DataFormatError(f"{source}: the upsampling layers mix fused and plain weight layouts")
    if fused_seen:
        found = fused_seen.pop()
        if fused_scale is not None and fused_scale != found:
            raise ConfigError(f"fused_scale: {source} has {'fused (in, out, 3, 3)' if found else 'plain (out, in, 3, 3)'} "
                              f"upsampling weights; fused_scale={fused_scale} does not fit them")
        fused_scale = found
        notes["fused_scale"] = "from the weight layout"
    else:
        notes["fused_scale"] = "given" if fused_scale is not None else "genforce default (False)"
        fused_scale = bool(fused_scale) if fused_scale is not None else False
    return PGGANConfig(resolution=4 * 2 ** (blocks - 1), z_dim=z_in - label_size, channels=channels,
                       label_size=label_size, image_channels=int(state["output0.weight"].shape[0]),
                       fused_scale=fused_scale, use_wscale=use_wscale, final_tanh=final_tanh, notes=notes)


def is_pggan_state(state: dict) -> bool:
    return ("layer0.weight" in state and "output0.weight" in state and "lod" in state
            and not any(str(k).startswith(("mapping.", "synthesis.")) for k in state))

"""StyleGAN (v1, Karras et al. 2019) and StyleGAN2 (Karras et al. 2020) generators in genforce's layout.

Written from the layout of genforce's published checkpoints (InterFaceGAN's and SeFa's models in
genforce's model zoo) and the papers, in plain torch (fp32, any device). genforce and SeFa share the
layout: same names, same shapes. Both versions share the mapping network and the mean-w buffer::

    mapping.label_weight              (labels, z) class embedding (conditional only); genforce's
                                      StyleGAN2-ADA layout has mapping.LabelEmbed.weight / .bias (z, labels)
                                      instead, a dense layer whose output is normalised apart from z
    mapping.dense{i}.weight / .bias   i < mapping_layers; dense0 takes z (2 z when conditional); the last
                                      gives w (w_dim) or one w per layer (w_dim * num_layers)
    truncation.w_avg                  (w_dim,) mean w (or (num_layers * w_dim,))

StyleGAN v1 synthesis (``num_layers`` = 2 per resolution, 4 px up)::

    synthesis.lod                     () level of detail (0: full resolution)
    synthesis.layer0.const            (1, C, 4, 4) constant input (or layer0.weight (C, w, 4, 4))
    synthesis.layer{i}.weight / .bias (C, C_in, 3, 3) convolution, nearest 2x upsampling (or the fused
                                      transposed convolution) before the even layers from 8 px on
    synthesis.layer{i}.blur.kernel    (C, 1, 3, 3) [1 2 1] blur after the upsampling convolutions
    synthesis.layer{i}.apply_noise.weight / .noise   per-channel strength (C,), stored noise (1, 1, r, r)
                                      (channel noise: strength (r, r), noise (1, C, 1, 1))
    synthesis.layer{i}.style.weight / .bias          (2 C, w) affine: per-channel scale - 1 and shift
    synthesis.output{b}.weight / .bias               (3, C, 1, 1) to-RGB of block b

    A layer: [upsample] conv [blur] + noise + bias, leaky ReLU 0.2, instance norm, x * (1 + scale) + shift.

StyleGAN2 synthesis (config F; genforce's ``skip`` architecture, or ``origin``)::

    synthesis.early_layer.const       (1, C, 4, 4)
    synthesis.layer{i}.weight / .bias (C, C_in, 3, 3) modulated convolution; odd layers upsample (a
                                      stride-2 transposed convolution, then the 4x4 [1 3 3 1] filter)
    synthesis.layer{i}.style.weight / .bias          (C_in, w) affine; the style is A w + b + 1
    synthesis.layer{i}.noise / .noise_strength       (1, 1, r, r), ()
    synthesis.layer{odd}.filter.kernel               (1, 1, 4, 4)
    synthesis.output{b}.weight / .bias / .style.*    to-RGB (modulated 1x1, not demodulated); every
                                      block (skip) or the last only (origin)
    synthesis.upsample.kernel         (1, 1, 4, 4) image upsampling filter (skip)

Equalised learning rate everywhere: weights scaled by gain / sqrt(fan_in) (times the mapping's learning
rate multiplier, 0.01 by default; biases by the multiplier). v1 uses gain sqrt(2) (1 for the styles and
to-RGB) and plain leaky ReLU; v2 gain 1 and leaky ReLU times sqrt(2).

w+ rows: v1's layer i reads row i. v2's layer i reads row i and to-RGB b reads row 2 b + 1 (so row
2 b + 1 feeds layer 2 b + 1 and to-RGB b; the last row only the last to-RGB).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from latentnav.errors import ConfigError, DataFormatError
from latentnav.generators.genforce_pggan import EPS, fused_up_kernel, nearest_up, pixel_norm, progressive_image
from latentnav.generators.stylegan2 import fused_by_default, set_modconv_mode

SQRT2 = math.sqrt(2.0)
#: genforce's ``fused_scale="auto"``: StyleGAN v1 fuses upsampling and convolution from this resolution on.
AUTO_FUSED_MIN_RES = 128


@dataclass
class StyleGANConfig:
    version: int                        # 1 or 2
    resolution: int
    z_dim: int
    w_dim: int
    channels: list[int]                 # per block, 4 px first
    label_size: int = 0
    label_dense: bool = False           # genforce's StyleGAN2-ADA: a dense label embedding, z and it normalised apart
    mapping_layers: int = 8
    mapping_fmaps: int = 512
    mapping_lr_mul: float = 0.01
    repeat_w: bool = True
    image_channels: int = 3
    use_wscale: bool = True
    final_tanh: bool = False
    # v1
    const_input: bool = True
    fused: list[bool] = field(default_factory=list)  # per block: fused upsampling convolution
    noise_type: str = "spatial"
    # v2
    architecture: str = "skip"
    demodulate: bool = True
    notes: dict = field(default_factory=dict)

    @property
    def blocks(self) -> int:
        return len(self.channels)

    @property
    def num_layers(self) -> int:
        """Rows of w+ (genforce's ``num_layers``): two per resolution."""
        return 2 * self.blocks

    @property
    def conv_layers(self) -> int:
        return self.num_layers if self.version == 1 else self.num_layers - 1

    def layer_resolution(self, i: int) -> int:
        return 4 * 2 ** (i // 2 if self.version == 1 else (i + 1) // 2)


# ------------------------------------------------------------------------- shared parts
class _Dense(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, scale: float, bias_scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(out_dim, in_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.scale, self.bias_scale = scale, bias_scale

    def effective_weight(self) -> torch.Tensor:
        return self.weight * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias * self.bias_scale)


class _Mapping(nn.Module):
    def __init__(self, c: StyleGANConfig) -> None:
        super().__init__()
        self.version, self.label_size = c.version, c.label_size
        self.label_dense = c.label_dense
        if c.label_size and c.label_dense:
            self.LabelEmbed = _Dense(c.label_size, c.z_dim, 1 / math.sqrt(c.label_size) if c.use_wscale else 1.0, 1.0)
        elif c.label_size:
            self.label_weight = nn.Parameter(torch.zeros(c.label_size, c.z_dim))
        gain = SQRT2 if c.version == 1 else 1.0
        out_last = c.w_dim if c.repeat_w else c.w_dim * c.num_layers
        for i in range(c.mapping_layers):
            d_in = (2 if c.label_size else 1) * c.z_dim if i == 0 else c.mapping_fmaps
            d_out = out_last if i == c.mapping_layers - 1 else c.mapping_fmaps
            scale = (gain / math.sqrt(d_in) if c.use_wscale else 1.0) * c.mapping_lr_mul
            self.add_module(f"dense{i}", _Dense(d_in, d_out, scale, c.mapping_lr_mul))
        self.layers = c.mapping_layers

    def forward(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.label_size and self.label_dense:
            x = torch.cat([pixel_norm(z), pixel_norm(self.LabelEmbed(labels.to(z)))], dim=1)
        elif self.label_size:
            x = pixel_norm(torch.cat([z, labels.to(z) @ self.label_weight], dim=1))
        else:
            x = pixel_norm(z)
        for i in range(self.layers):
            x = F.leaky_relu(getattr(self, f"dense{i}")(x), 0.2)
            if self.version == 2:
                x = x * SQRT2
        return x


class _Truncation(nn.Module):
    def __init__(self, c: StyleGANConfig) -> None:
        super().__init__()
        self.register_buffer("w_avg", torch.zeros(c.w_dim if c.repeat_w else c.w_dim * c.num_layers))


class _Kernel(nn.Module):
    """Holds a filter kernel buffer (the file's own)."""

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.register_buffer("kernel", torch.zeros(*shape))


def depthwise(x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Each channel of x zero-padded by ``pad`` (left, right, top, bottom) and cross-correlated with
    ``kernel`` ((kh, kw), or (C, 1, kh, kw) per channel)."""
    c = x.shape[1]
    k = kernel.to(x)
    if not (k.ndim == 4 and k.shape[0] == c):
        k = k.reshape(1, 1, *k.shape[-2:]).expand(c, 1, -1, -1)
    return F.conv2d(F.pad(x, pad), k, groups=c)


# ------------------------------------------------------------------------- StyleGAN v1
class _NoiseV1(nn.Module):
    def __init__(self, res: int, ch: int, noise_type: str) -> None:
        super().__init__()
        spatial = noise_type == "spatial"
        self.register_buffer("noise", torch.zeros((1, 1, res, res) if spatial else (1, ch, 1, 1)))
        self.weight = nn.Parameter(torch.zeros(ch if spatial else (res, res)))
        self.spatial = spatial

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        strength = self.weight.view(1, -1, 1, 1) if self.spatial else self.weight.view(1, 1, *self.weight.shape)
        return x + noise.to(x) * strength


class _StyleConvV1(nn.Module):
    def __init__(self, c: StyleGANConfig, in_ch: int, out_ch: int, res: int, kind: str, fused: bool = False) -> None:
        super().__init__()
        self.kind = kind  # "const", "dense" (4x4 conv of w), "conv", "up"
        self.bias = nn.Parameter(torch.zeros(out_ch))
        if kind == "const":
            self.const = nn.Parameter(torch.zeros(1, out_ch, res, res))
        else:
            k = 4 if kind == "dense" else 3
            self.weight = nn.Parameter(torch.zeros(out_ch, in_ch, k, k))
            self.scale = SQRT2 / math.sqrt(in_ch * k * k) if c.use_wscale else 1.0
        if kind == "up":
            self.blur = _Kernel((out_ch, 1, 3, 3))
        self.fused = fused
        self.apply_noise = _NoiseV1(res, out_ch, c.noise_type)
        self.style = _Dense(c.w_dim, 2 * out_ch, 1 / math.sqrt(c.w_dim) if c.use_wscale else 1.0, 1.0)
        self.out_ch = out_ch

    def forward(self, x: Optional[torch.Tensor], w: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        if self.kind == "const":
            x = self.const.repeat(w.shape[0], 1, 1, 1)
        else:
            weight = self.weight * self.scale
            if self.kind == "dense":
                x = F.conv2d(w[:, :, None, None], weight, padding=3)
            elif self.kind == "up" and self.fused:
                x = F.conv_transpose2d(x, fused_up_kernel(weight).transpose(0, 1), stride=2, padding=1)
            else:
                x = F.conv2d(nearest_up(x) if self.kind == "up" else x, weight, padding=1)
            if self.kind == "up":
                x = depthwise(x, self.blur.kernel, (1, 1, 1, 1))
        x = self.apply_noise(x, noise)
        x = F.leaky_relu(x + self.bias.view(1, -1, 1, 1), 0.2)
        x = x - x.mean(dim=(2, 3), keepdim=True)
        x = x / torch.sqrt(x.pow(2).mean(dim=(2, 3), keepdim=True) + EPS)
        style = self.style(w).view(-1, 2, self.out_ch, 1, 1)
        return x * (style[:, 0] + 1) + style[:, 1]


class _ToRGBV1(nn.Module):
    def __init__(self, c: StyleGANConfig, in_ch: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(c.image_channels, in_ch, 1, 1))
        self.bias = nn.Parameter(torch.zeros(c.image_channels))
        self.scale = 1 / math.sqrt(in_ch) if c.use_wscale else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale) + self.bias.view(1, -1, 1, 1)


class _SynthesisV1(nn.Module):
    def __init__(self, c: StyleGANConfig) -> None:
        super().__init__()
        self.config = c
        self.register_buffer("lod", torch.zeros(()))
        prev = c.w_dim
        for b, ch in enumerate(c.channels):
            res = 4 * 2 ** b
            if b == 0:
                first = _StyleConvV1(c, prev, ch, res, "const" if c.const_input else "dense")
            else:
                first = _StyleConvV1(c, prev, ch, res, "up", fused=c.fused[b])
            self.add_module(f"layer{2 * b}", first)
            self.add_module(f"layer{2 * b + 1}", _StyleConvV1(c, ch, ch, res, "conv"))
            self.add_module(f"output{b}", _ToRGBV1(c, ch))
            prev = ch

    def noise_layers(self) -> list[nn.Module]:
        return [getattr(self, f"layer{i}").apply_noise for i in range(self.config.conv_layers)]

    def forward(self, wp: torch.Tensor, noise: Sequence[Optional[torch.Tensor]]) -> torch.Tensor:
        c = self.config
        lod = float(self.lod)
        top = c.blocks - 1
        x = image = None
        for b in range(c.blocks):
            here = top - b
            if lod < here + 1:
                for i in (2 * b, 2 * b + 1):
                    x = getattr(self, f"layer{i}")(x, wp[:, i], _noise_for(noise[i], self.noise_layers()[i], wp.shape[0], wp))
            image = progressive_image(image, x, getattr(self, f"output{b}"), lod, here)
        return torch.tanh(image) if c.final_tanh else image


def _noise_for(given: Optional[torch.Tensor], layer: nn.Module, batch: int, like: torch.Tensor) -> torch.Tensor:
    """The noise a layer adds: ``given``, or fresh N(0, 1) of the stored map's shape per sample (drawn as
    genforce draws it, one ``randn`` per layer in order, so a seeded CPU run reproduces its images)."""
    if given is not None:
        return given
    shape = (batch,) + tuple(layer.noise.shape[1:])
    return torch.randn(shape, device=like.device, dtype=like.dtype)


# ------------------------------------------------------------------------- StyleGAN2
class _Input(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.const = nn.Parameter(torch.zeros(1, ch, 4, 4))


class _ModConv(nn.Module):
    """Modulated convolution in either exact form (``mode``, set per network by ``GenforceStyleGAN.set_modconv``):
    genforce's own fused path (per-sample weights, grouped over the batch) or the shared weight between an input
    scale and an output demodulation; ``auto`` chooses per call (:func:`latentnav.generators.stylegan2.fused_by_default`)."""

    mode = "auto"

    def __init__(self, c: StyleGANConfig, in_ch: int, out_ch: int, res: int, kernel: int, up: bool,
                 demodulate: bool, noise: bool, act: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.scale = 1 / math.sqrt(in_ch * kernel * kernel) if c.use_wscale else 1.0
        self.style = _Dense(c.w_dim, in_ch, 1 / math.sqrt(c.w_dim) if c.use_wscale else 1.0, 1.0)
        if noise:
            self.register_buffer("noise", torch.zeros(1, 1, res, res))
            self.noise_strength = nn.Parameter(torch.zeros(()))
        if up:
            self.filter = _Kernel((1, 1, 4, 4))
        self.up, self.demodulate, self.has_noise, self.act = up, demodulate, noise, act
        self.k = kernel

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        s = self.style(w) + 1.0
        fused = self.mode == "fused" if self.mode != "auto" else fused_by_default(x, s)
        x = self._fused(x, s) if fused else self._nonfused(x, s)
        if self.has_noise:
            x = x + noise.to(x) * self.noise_strength
        x = x + self.bias.view(1, -1, 1, 1)
        return F.leaky_relu(x, 0.2) * SQRT2 if self.act else x

    def _nonfused(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        weight = self.weight * self.scale  # (out, in, k, k), shared by the batch
        x = x * s[:, :, None, None]
        if self.up:
            x = F.conv_transpose2d(x, weight.flip(2, 3).transpose(0, 1), stride=2)
            x = depthwise(x, self.filter.kernel, (1, 1, 1, 1))
        else:
            x = F.conv2d(x, weight, padding=self.k // 2)
        if self.demodulate:  # sum over (in, k, k) of (w s)^2 = s^2 @ sum_k w^2, per sample and output channel
            x = x * torch.rsqrt(s.pow(2) @ weight.pow(2).sum([2, 3]).t() + EPS)[:, :, None, None]
        return x

    def _fused(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        b, in_ch, h, wd = x.shape
        weight = (self.weight * self.scale)[None] * s[:, None, :, None, None]  # (B, out, in, k, k)
        if self.demodulate:
            weight = weight / torch.sqrt(weight.pow(2).sum(dim=(2, 3, 4)) + EPS)[:, :, None, None, None]
        out_ch = weight.shape[1]
        x = x.reshape(1, b * in_ch, h, wd)
        if self.up:
            # genforce's transposed convolution takes the kernel flipped: stride 2, no padding, then the
            # 4x4 filter padded by 1 on every side (2H + 1 -> 2H).
            tw = weight.flip(3, 4).transpose(1, 2).reshape(b * in_ch, out_ch, self.k, self.k)
            x = F.conv_transpose2d(x, tw, stride=2, groups=b)
            x = depthwise(x, self.filter.kernel, (1, 1, 1, 1))
        else:
            x = F.conv2d(x, weight.reshape(b * out_ch, in_ch, self.k, self.k), padding=self.k // 2, groups=b)
        return x.reshape(b, out_ch, x.shape[2], x.shape[3])


class _SynthesisV2(nn.Module):
    def __init__(self, c: StyleGANConfig) -> None:
        super().__init__()
        self.config = c
        self.early_layer = _Input(c.channels[0])
        prev = c.channels[0]
        for b, ch in enumerate(c.channels):
            res = 4 * 2 ** b
            if b > 0:
                self.add_module(f"layer{2 * b - 1}", _ModConv(c, prev, ch, res, 3, True, c.demodulate, True, True))
            self.add_module(f"layer{2 * b}", _ModConv(c, ch, ch, res, 3, False, c.demodulate, True, True))
            if c.architecture == "skip" or b == c.blocks - 1:
                self.add_module(f"output{b}", _ModConv(c, ch, c.image_channels, res, 1, False, False, False, False))
            prev = ch
        if c.architecture == "skip":
            self.upsample = _Kernel((1, 1, 4, 4))

    def noise_layers(self) -> list[nn.Module]:
        return [getattr(self, f"layer{i}") for i in range(self.config.conv_layers)]

    def upsample_image(self, image: torch.Tensor) -> torch.Tensor:
        """2x: zero insertion (samples at even positions), pad (2, 1), the 4x4 filter (gain 4 in the kernel)."""
        b, c, h, w = image.shape
        up = F.pad(image.reshape(b, c, h, 1, w, 1), (0, 1, 0, 0, 0, 1)).reshape(b, c, 2 * h, 2 * w)
        return depthwise(up, self.upsample.kernel, (2, 1, 2, 1))

    def forward(self, wp: torch.Tensor, noise: Sequence[Optional[torch.Tensor]]) -> torch.Tensor:
        c = self.config
        batch = wp.shape[0]
        x = self.early_layer.const.repeat(batch, 1, 1, 1)
        layers = self.noise_layers()
        image = None
        for i in range(c.conv_layers):
            x = layers[i](x, wp[:, i], _noise_for(noise[i], layers[i], batch, wp))
            if c.architecture == "skip" and i % 2 == 0:
                rgb = getattr(self, f"output{i // 2}")(x, wp[:, i + 1])
                image = rgb if image is None else rgb + self.upsample_image(image)
        if c.architecture == "origin":
            image = getattr(self, f"output{c.blocks - 1}")(x, wp[:, c.num_layers - 1])
        return torch.tanh(image) if c.final_tanh else image


# ------------------------------------------------------------------------- the generator
class GenforceStyleGAN(nn.Module):
    """genforce's StyleGAN (v1) or StyleGAN2 generator: ``mapping``, ``truncation`` (the mean-w buffer)
    and ``synthesis``, named as in the file."""

    def __init__(self, config: StyleGANConfig) -> None:
        super().__init__()
        self.config = config
        self.mapping = _Mapping(config)
        self.truncation = _Truncation(config)
        self.synthesis = _SynthesisV1(config) if config.version == 1 else _SynthesisV2(config)

    def set_modconv(self, mode: str) -> "GenforceStyleGAN":
        """StyleGAN2: run every modulated convolution ``fused``, ``nonfused`` or ``auto`` (chosen per call)."""
        set_modconv_mode(self, _ModConv, mode)
        return self

    def w_avg(self) -> torch.Tensor:
        """(w_dim,) or (num_layers, w_dim) when the mapping gives one w per layer."""
        c = self.config
        avg = self.truncation.w_avg
        return avg if c.repeat_w else avg.view(c.num_layers, c.w_dim)

    def to_wp(self, w: torch.Tensor) -> torch.Tensor:
        """Mapping output (B, w_dim) or (B, w_dim * num_layers) as w+ (B, num_layers, w_dim)."""
        c = self.config
        if w.ndim == 3:
            return w
        if c.repeat_w and w.shape[1] == c.w_dim:
            return w[:, None, :].repeat(1, c.num_layers, 1)
        return w.view(w.shape[0], c.num_layers, c.w_dim)

    def stored_noise(self) -> list[torch.Tensor]:
        return [layer.noise for layer in self.synthesis.noise_layers()]

    def style_affines(self) -> list[tuple[str, int, _Dense]]:
        """(name, w+ row, affine) of every style affine: the convolutions in order, then the to-RGB layers
        (v2)."""
        c = self.config
        found = [(f"layer{i}", i, getattr(self.synthesis, f"layer{i}").style) for i in range(c.conv_layers)]
        if c.version == 2:
            found += [(f"output{b}", 2 * b + 1, getattr(self.synthesis, f"output{b}").style)
                      for b in range(c.blocks) if hasattr(self.synthesis, f"output{b}")]
        return found


# ------------------------------------------------------------------------- reading a state dict
def _count(state: dict, prefix: str) -> int:
    n = 0
    while any(k.startswith(f"{prefix}{n}.") for k in state):
        n += 1
    return n


def is_stylegan_state(state: dict) -> int:
    """1 or 2 for a genforce StyleGAN / StyleGAN2 state dict, else 0 (cheap: key names only)."""
    if "truncation.w_avg" not in state or "mapping.dense0.weight" not in state:
        return 0
    if "synthesis.layer0.apply_noise.weight" in state:
        return 1
    if "synthesis.early_layer.const" in state or "synthesis.layer0.noise_strength" in state:
        return 2
    return 0


def infer_stylegan_config(state: dict, source: str, version: int, mapping_lr_mul: float = 0.01,
                          fused_scale="auto", use_wscale: bool = True, final_tanh: bool = False,
                          demodulate: bool = True) -> StyleGANConfig:
    """The configuration of a genforce StyleGAN (``version`` 1) or StyleGAN2 (2) state dict.

    From the file: resolution, z / w sizes, labels (``mapping.label_weight``), mapping depth and width,
    whether the mapping gives one w for all layers (``repeat_w``), channels, const input, noise type (v1),
    architecture (v2: to-RGB at every block = skip, the last only = origin). Not in the file, so given
    (genforce's defaults): ``mapping_lr_mul`` 0.01, ``fused_scale`` "auto" (v1: fused from 128 px on; the
    weights have the same shape either way), ``use_wscale`` True, ``final_tanh`` False, ``demodulate`` True
    (v2)."""
    def need(key: str) -> torch.Tensor:
        if key not in state:
            raise DataFormatError(f"{source}: not a genforce StyleGAN{'' if version == 1 else '2'} state dict "
                                  f"(missing {key})")
        return state[key]

    mapping_layers = _count(state, "mapping.dense")
    if mapping_layers == 0:
        need("mapping.dense0.weight")
    label_dense = "mapping.LabelEmbed.weight" in state
    embed = state.get("mapping.LabelEmbed.weight")
    if label_dense:
        label_size, z_dim = int(embed.shape[1]), int(embed.shape[0])
    elif "mapping.label_weight" in state:
        label_size, z_dim = (int(n) for n in state["mapping.label_weight"].shape)
    else:
        label_size, z_dim = 0, int(need("mapping.dense0.weight").shape[1])
    dense0 = need("mapping.dense0.weight")
    if dense0.shape[1] != (2 if label_size else 1) * z_dim:
        raise DataFormatError(f"{source}: mapping.dense0.weight has shape {tuple(dense0.shape)}; expected "
                              f"(fmaps, {(2 if label_size else 1) * z_dim})")
    w_dim = int(need("synthesis.layer0.style.weight").shape[1])
    blocks = _count(state, "synthesis.output") if version == 1 else 0
    if version == 2:
        conv = _count(state, "synthesis.layer")
        if conv % 2 == 0:
            raise DataFormatError(f"{source}: a genforce StyleGAN2 has an odd number of synthesis layers; found {conv}")
        blocks = (conv + 1) // 2
    if blocks < 2:
        raise DataFormatError(f"{source}: genforce StyleGAN needs at least 8 px (2 blocks); found {blocks}")
    num_layers = 2 * blocks
    last = need(f"mapping.dense{mapping_layers - 1}.weight")
    if last.shape[0] == w_dim:
        repeat_w = True
    elif last.shape[0] == w_dim * num_layers:
        repeat_w = False
    else:
        raise DataFormatError(f"{source}: the mapping gives {last.shape[0]} values; expected w ({w_dim}) or one w per "
                              f"layer ({w_dim * num_layers})")
    notes = {"repeat_w": "from the mapping's output size"}
    kw = dict(version=version, resolution=4 * 2 ** (blocks - 1), z_dim=z_dim, w_dim=w_dim, label_size=label_size,
              label_dense=label_dense,
              mapping_layers=mapping_layers, mapping_fmaps=int(dense0.shape[0]), mapping_lr_mul=float(mapping_lr_mul),
              repeat_w=repeat_w, use_wscale=use_wscale, final_tanh=final_tanh, notes=notes)
    if version == 1:
        channels = [int(need(f"synthesis.layer{2 * b + 1}.bias").shape[0]) for b in range(blocks)]
        const_input = "synthesis.layer0.const" in state
        noise = need("synthesis.layer0.apply_noise.noise")
        noise_type = "spatial" if noise.shape[1] == 1 and noise.shape[2] == 4 else "channel"
        if isinstance(fused_scale, list) and len(fused_scale) == blocks:  # per block, known from the file
            fused = [bool(f) for f in fused_scale]
            notes["fused_scale"] = f"from the file (fused blocks {[b for b in range(blocks) if fused[b]]})"
        elif fused_scale in ("auto", True, False):
            fused = [b > 0 and (4 * 2 ** b >= AUTO_FUSED_MIN_RES if fused_scale == "auto" else bool(fused_scale))
                     for b in range(blocks)]
            notes["fused_scale"] = f"{fused_scale!r} ({'given' if fused_scale != 'auto' else 'genforce default'})"
        else:
            raise ConfigError(f"fused_scale: expected 'auto', true or false, got {fused_scale!r}")
        image_channels = int(need("synthesis.output0.weight").shape[0])
        return StyleGANConfig(channels=channels, image_channels=image_channels, const_input=const_input,
                              fused=fused, noise_type=noise_type, **kw)
    if "synthesis.early_layer.const" not in state:
        raise DataFormatError(f"{source}: genforce StyleGAN2 without a constant input (early_layer.const) does not "
                              "run in genforce itself; not supported")
    if "synthesis.layer1.style.weight" not in state:
        raise DataFormatError(f"{source}: genforce StyleGAN2 'resnet' layout (layer1 without a style) does not run in "
                              "genforce itself; not supported")
    noise = need("synthesis.layer0.noise")
    if tuple(noise.shape) != (1, 1, 4, 4):
        raise DataFormatError(f"{source}: synthesis.layer0.noise has shape {tuple(noise.shape)}; only genforce's "
                              "spatial noise (1, 1, r, r) runs in StyleGAN2")
    channels = [int(need(f"synthesis.layer{2 * b}.bias").shape[0]) for b in range(blocks)]
    rgbs = [b for b in range(blocks) if f"synthesis.output{b}.weight" in state]
    if rgbs == list(range(blocks)):
        architecture = "skip"
    elif rgbs == [blocks - 1]:
        architecture = "origin"
    else:
        raise DataFormatError(f"{source}: to-RGB layers at blocks {rgbs}; expected every block (skip) or the last (origin)")
    image_channels = int(state[f"synthesis.output{blocks - 1}.weight"].shape[0])
    return StyleGANConfig(channels=channels, image_channels=image_channels, architecture=architecture,
                          demodulate=demodulate, **kw)

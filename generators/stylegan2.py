"""StyleGAN2 generator compatible with the checkpoints of the rosinality/stylegan2-pytorch port.

Written from the port's published architecture (parameter names and maths), in plain
torch: the port's custom CUDA kernels (fused bias+leaky-ReLU, upfirdn2d) are replaced by
their reference definitions, so it runs on CPU and GPU alike.

State-dict layout of the port's ``g_ema`` (what :func:`infer_config` reads)::

    style.{1..n_mlp}.weight / .bias            mapping network (EqualLinear, lr_mul 0.01)
    input.input                                (1, C4, 4, 4) constant
    conv1.conv.weight                          (1, out, in, 3, 3) modulated conv
    conv1.conv.modulation.weight / .bias       (in, style_dim) / (in,)
    conv1.noise.weight, conv1.activate.bias    noise strength (1,), bias (out,)
    to_rgb1.conv.weight, to_rgb1.bias          (1, 3, in, 1, 1), (1, 3, 1, 1)
    convs.{2j}    (upsampling) and convs.{2j+1} StyledConvs of resolution 2**(j+3)
    to_rgbs.{j}.upsample.kernel                4x4 FIR kernel buffer
    convs.{2j}.conv.blur.kernel                4x4 FIR kernel buffer
    noises.noise_{i}                           (1, 1, r, r) stored noise, r = 2**((i+5)//2)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from latentnav.errors import ConfigError, DataFormatError


def make_kernel(k: Sequence[float]) -> torch.Tensor:
    k = torch.tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, FIR-filter (true convolution), downsample.

    x (B, C, H, W); kernel (kh, kw); pad (before, after), applied on both axes.
    """
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(b, c, h * up, w * up)
    p0, p1 = pad
    x = F.pad(x, (max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)))
    if p0 < 0 or p1 < 0:
        x = x[:, :, max(-p0, 0): x.shape[2] - max(-p1, 0), max(-p0, 0): x.shape[3] - max(-p1, 0)]
    weight = torch.flip(kernel, [0, 1]).to(x)[None, None].repeat(c, 1, 1, 1)
    x = F.conv2d(x, weight, groups=c)
    return x[:, :, ::down, ::down] if down > 1 else x


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, negative_slope: float = 0.2, scale: float = 2**0.5) -> torch.Tensor:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape).to(x), negative_slope) * scale


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: weight * (lr_mul / sqrt(in)), bias * lr_mul."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0, activation: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def effective_weight(self) -> torch.Tensor:
        return self.weight * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.effective_weight()), self.bias * self.lr_mul)
        return F.linear(x, self.effective_weight(), self.bias * self.lr_mul)


class Blur(nn.Module):
    def __init__(self, kernel: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        k = make_kernel(kernel)
        if upsample_factor > 1:
            k = k * upsample_factor**2
        self.register_buffer("kernel", k)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    def __init__(self, kernel: Sequence[float], factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor**2)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


def fused_by_default(x: torch.Tensor, s: torch.Tensor) -> bool:
    """``auto``'s choice of modulated-convolution form for input x (B, in, h, w) and styles s (B, in), in every
    StyleGAN2 port (rosinality, NVIDIA, genforce): grouped per-sample weights only for one sample without
    gradients (then the grouped convolution is one ordinary convolution and the activations need no scaling);
    the shared weight otherwise. Measured on a 2-core AMD EPYC, StyleGAN2 style 512, channels x2
    (``bench/stylegan2_passes.py``, ``bench/RESULTS.md``): ``auto`` took 0.64x the grouped form's time for the
    64 px unsupervised step (batch 2; with gradients the grouped form also computes per-sample weight gradients,
    1.66x the FLOPs), 0.74x for a 256 px projection step and 0.61x for a 64 px annotation batch of 16."""
    grad = torch.is_grad_enabled() and (x.requires_grad or s.requires_grad)
    return x.shape[0] == 1 and not grad


def set_modconv_mode(network: nn.Module, kind: type, mode: str) -> None:
    """Set ``mode`` (one of :data:`MODCONV_MODES`, else one line) on every ``kind`` module of ``network``."""
    if mode not in MODCONV_MODES:
        raise ConfigError(f"modconv: expected one of {', '.join(MODCONV_MODES)}, got {mode!r}")
    for module in network.modules():
        if isinstance(module, kind):
            module.mode = mode


#: How the modulated convolution runs: "fused" folds the styles into per-sample weights and runs one grouped
#: convolution (groups = batch); "nonfused" scales the input, runs one convolution with the shared weight and
#: demodulates the output (NVIDIA's training form); "auto" picks per call (:func:`fused_by_default`).
MODCONV_MODES = ("auto", "fused", "nonfused")


class ModulatedConv2d(nn.Module):
    """Per-sample modulated (and optionally demodulated) convolution, in either of two exact forms.

    Both compute ``conv(x, scale * weight * s_in) * d_out`` with ``d = rsqrt(sum (scale * weight * s)^2 + 1e-8)``;
    they differ only in rounding (< 1e-5 at the golden fixtures' widths). ``mode`` (set for the whole network by
    ``StyleGAN2Generator.set_modconv``) is one of :data:`MODCONV_MODES`."""

    mode = "auto"

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int, demodulate: bool = True,
                 upsample: bool = False, blur_kernel: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.in_ch, self.out_ch, self.kernel_size = in_ch, out_ch, kernel_size
        self.upsample, self.demodulate = upsample, demodulate
        self.scale = 1 / math.sqrt(in_ch * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)

    def fused_now(self, x: torch.Tensor, s: torch.Tensor) -> bool:
        """Whether this call takes the grouped form: ``mode`` when forced, else :func:`fused_by_default`."""
        return self.mode == "fused" if self.mode != "auto" else fused_by_default(x, s)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """x (B, in, h, w) modulated by its style-space vector s = modulation(w) (B, in)."""
        return self._fused(x, s) if self.fused_now(x, s) else self._nonfused(x, s)

    def _fused(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        weight = self.scale * self.weight * s.view(b, 1, self.in_ch, 1, 1)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(b, self.out_ch, 1, 1, 1)
        k = self.kernel_size
        if self.upsample:
            x = x.reshape(1, b * self.in_ch, h, w)
            weight = weight.transpose(1, 2).reshape(b * self.in_ch, self.out_ch, k, k)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=b)
            out = out.view(b, self.out_ch, out.shape[-2], out.shape[-1])
            return self.blur(out)
        x = x.reshape(1, b * self.in_ch, h, w)
        out = F.conv2d(x, weight.reshape(b * self.out_ch, self.in_ch, k, k), padding=self.padding, groups=b)
        return out.view(b, self.out_ch, out.shape[-2], out.shape[-1])

    def _nonfused(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        weight = self.scale * self.weight[0]  # (out, in, k, k), shared by the batch
        x = x * s.view(b, self.in_ch, 1, 1)
        if self.upsample:
            out = F.conv_transpose2d(x, weight.transpose(0, 1), padding=0, stride=2)
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:  # sum over (in, k, k) of (w s)^2 = s^2 @ sum_k w^2, per sample and output channel
            d = torch.rsqrt(s.pow(2) @ weight.pow(2).sum([2, 3]).t() + 1e-8)
            out = out * d.view(b, self.out_ch, 1, 1)
        return self.blur(out) if self.upsample else out


class NoiseInjection(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: Optional[torch.Tensor]) -> torch.Tensor:
        if noise is None:
            noise = x.new_empty(x.shape[0], 1, x.shape[2], x.shape[3]).normal_()
        return x + self.weight * noise


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class StyledConv(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int, upsample: bool = False,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, kernel_size, style_dim, upsample=upsample, blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)

    def forward(self, x: torch.Tensor, s: torch.Tensor, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, s), noise))


class ToRGB(nn.Module):
    def __init__(self, in_ch: int, style_dim: int, upsample: bool = True, blur_kernel: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, s: torch.Tensor, skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = self.conv(x, s) + self.bias
        return out + self.upsample(skip) if skip is not None else out


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.repeat(batch, 1, 1, 1)


def port_channels(size: int, channel_multiplier: int) -> dict[int, int]:
    """The port's channel count per resolution."""
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
    return {r: c if r <= 32 else c * channel_multiplier for r, c in table.items() if r <= size}


@dataclass(frozen=True)
class StyleGAN2Config:
    size: int
    style_dim: int
    n_mlp: int
    channels: tuple[int, ...]  # per resolution 4, 8, ..., size
    lr_mlp: float = 0.01

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    @property
    def num_layers(self) -> int:
        return (self.log_size - 2) * 2 + 1

    @property
    def n_latent(self) -> int:
        return self.log_size * 2 - 2

    @property
    def channel_multiplier(self) -> Optional[int]:
        """The port's multiplier when the channels follow its table, else None."""
        for cm in (1, 2, 4):
            if tuple(port_channels(self.size, cm).values()) == self.channels:
                return cm
        return None

    @classmethod
    def port(cls, size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2) -> "StyleGAN2Config":
        return cls(size, style_dim, n_mlp, tuple(port_channels(size, channel_multiplier).values()))


class StyleGAN2Generator(nn.Module):
    """Mapping network + synthesis network with the port's module names."""

    def __init__(self, config: StyleGAN2Config, blur_kernel: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.config = config
        d = config.style_dim
        self.style = nn.Sequential(PixelNorm(), *[EqualLinear(d, d, lr_mul=config.lr_mlp, activation=True) for _ in range(config.n_mlp)])
        ch = config.channels
        self.input = ConstantInput(ch[0])
        self.conv1 = StyledConv(ch[0], ch[0], 3, d, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(ch[0], d, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for i in range(config.num_layers):
            r = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, r, r))
        in_ch = ch[0]
        for out_ch in ch[1:]:
            self.convs.append(StyledConv(in_ch, out_ch, 3, d, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_ch, out_ch, 3, d, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_ch, d))
            in_ch = out_ch

    def set_modconv(self, mode: str) -> "StyleGAN2Generator":
        """Run every modulated convolution ``fused``, ``nonfused`` or ``auto`` (chosen per call)."""
        set_modconv_mode(self, ModulatedConv2d, mode)
        return self

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, style_dim) -> w (B, style_dim)."""
        return self.style(z)

    def synthesis(self, latent: torch.Tensor, noise: Sequence[Optional[torch.Tensor]]) -> torch.Tensor:
        """w+ (B, n_latent, style_dim) -> images (B, 3, size, size), roughly in [-1, 1]."""
        return self.synthesis_from_styles(self.styles(latent), noise)

    def style_layers(self) -> list[tuple[str, ModulatedConv2d, int]]:
        """(name, modulated convolution, the w+ row it reads) of every style-consuming layer in synthesis
        order: conv1 (row 0), to_rgb1 (1), then per resolution convs.2j (2j + 1), convs.2j+1 (2j + 2) and
        to_rgbs.j (2j + 3). Style space S (Wu et al. 2021) is these layers' styles, in this order."""
        layers = [("conv1", self.conv1.conv, 0), ("to_rgb1", self.to_rgb1.conv, 1)]
        for j, to_rgb in enumerate(self.to_rgbs):
            layers += [(f"convs.{2 * j}", self.convs[2 * j].conv, 2 * j + 1),
                       (f"convs.{2 * j + 1}", self.convs[2 * j + 1].conv, 2 * j + 2),
                       (f"to_rgbs.{j}", to_rgb.conv, 2 * j + 3)]
        return layers

    def styles(self, latent: torch.Tensor) -> list[torch.Tensor]:
        """w+ (B, n_latent, style_dim) -> the style of every layer of :meth:`style_layers`, (B, in_channels) each:
        s = modulation(w_row), the affine each layer applies to its row of w+."""
        return [conv.modulation(latent[:, row]) for _, conv, row in self.style_layers()]

    def synthesis_from_styles(self, styles: Sequence[torch.Tensor], noise: Sequence[Optional[torch.Tensor]]) -> torch.Tensor:
        """Styles (as :meth:`styles` returns them) -> images (B, 3, size, size), roughly in [-1, 1]."""
        s = iter(styles)
        out = self.conv1(self.input(styles[0].shape[0]), next(s), noise=noise[0])
        skip = self.to_rgb1(out, next(s))
        for conv_up, conv, n1, n2, to_rgb in zip(self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2], self.to_rgbs):
            out = conv_up(out, next(s), noise=n1)
            out = conv(out, next(s), noise=n2)
            skip = to_rgb(out, next(s), skip)
        return skip

    def stored_noise(self) -> list[torch.Tensor]:
        return [getattr(self.noises, f"noise_{i}") for i in range(self.config.num_layers)]

    def modulation_layers(self) -> list[tuple[str, EqualLinear]]:
        """(name, modulation) of every style-consuming layer: conv1, to_rgb1, convs.*, to_rgbs.*."""
        layers = [("conv1", self.conv1.conv.modulation), ("to_rgb1", self.to_rgb1.conv.modulation)]
        for j, conv in enumerate(self.convs):
            layers.append((f"convs.{j}", conv.conv.modulation))
        for j, rgb in enumerate(self.to_rgbs):
            layers.append((f"to_rgbs.{j}", rgb.conv.modulation))
        return layers


_STYLE_KEY = re.compile(r"^style\.(\d+)\.weight$")


def infer_config(state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> StyleGAN2Config:
    """Resolution, style size, mapping depth and channels from a ``g_ema`` state dict."""
    mlp = sorted(int(m.group(1)) for k in state_dict if (m := _STYLE_KEY.match(k)))
    required = ["input.input", "conv1.conv.weight", "to_rgb1.conv.weight"]
    missing = [k for k in required if k not in state_dict]
    if not mlp or missing:
        raise DataFormatError(
            f"{source}: g_ema is not a StyleGAN2 generator of the rosinality port "
            f"(missing {', '.join(missing) or 'style.N.weight (mapping network)'})"
        )
    style_dim = state_dict[f"style.{mlp[0]}.weight"].shape[1]
    n_up = len({int(k.split(".")[1]) for k in state_dict if k.startswith("to_rgbs.")})
    channels = [state_dict["input.input"].shape[1]]
    for j in range(n_up):
        key = f"convs.{2 * j}.conv.weight"
        if key not in state_dict:
            raise DataFormatError(f"{source}: g_ema lacks {key} (found {n_up} to_rgbs)")
        channels.append(state_dict[key].shape[1])
    return StyleGAN2Config(size=4 * 2**n_up, style_dim=style_dim, n_mlp=len(mlp), channels=tuple(channels))

"""The StyleGAN2 generator of NVIDIA's PyTorch releases, as a plain-torch module (fp32, any device).

Written from the published architecture (Karras et al., "Analyzing and Improving the Image Quality of
StyleGAN", 2020; "Training Generative Adversarial Networks with Limited Data", 2020) and from the file
format: every parameter and buffer has the name and shape it has in the ``state_dict()`` of a
``Generator`` pickled by StyleGAN2-ADA-PyTorch (``training/networks.py``) or by StyleGAN3
(``training/networks_stylegan2.py``), so such a state dict loads strictly::

    mapping.w_avg                       (w_dim,)  running mean of w (absent when w_avg_beta is None)
    mapping.embed.weight / .bias        (embed, c_dim) / (embed,)     class-conditional nets only
    mapping.fc{i}.weight / .bias        (out, in) / (out,)            lr multiplier 0.01, leaky ReLU
    synthesis.b{r}.resample_filter      (4, 4) FIR filter, sum 1      (every block; a 1-D one of >= 8 taps)
    synthesis.b4.const                  (C4, 4, 4)
    synthesis.b{r}.conv0 / .conv1       weight (out, in, k, k), bias (out,), affine.weight (in, w_dim),
                                        affine.bias (in,), noise_const (r, r), noise_strength (),
                                        resample_filter                (conv0: up x2; b4 has conv1 only)
    synthesis.b{r}.torgb                weight (3, C, 1, 1), bias (3,), affine.weight / .bias
                                        (every block for 'skip', the last one for 'orig' / 'resnet')
    synthesis.b{r}.skip                 weight (out, in, 1, 1), resample_filter   ('resnet', r > 4)

The maths runs in float32 whatever ``num_fp16_res`` says (the releases' CPU path too), with the
reference definitions of the releases' custom ops: FIR up-sampling by zero insertion and a
depthwise convolution, the 3x3 up-sampling convolution as a stride-2 transposed convolution followed
by the FIR filter, and bias + activation + gain + clamp as separate torch ops.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from latentnav.generators.stylegan2 import fused_by_default

# name -> (function of x, gain the layers use by default); the releases' activation table
ACTIVATIONS = {
    "linear": (lambda x: x, 1.0),
    "relu": (F.relu, math.sqrt(2)),
    "lrelu": (lambda x: F.leaky_relu(x, 0.2), math.sqrt(2)),
    "tanh": (torch.tanh, 1.0),
    "sigmoid": (torch.sigmoid, 1.0),
    "elu": (F.elu, 1.0),
    "selu": (F.selu, 1.0),
    "softplus": (F.softplus, 1.0),
    "swish": (lambda x: torch.sigmoid(x) * x, math.sqrt(2)),
}


def bias_act(x: torch.Tensor, bias: Optional[torch.Tensor], act: str = "linear", gain: float = 1.0,
             clamp: Optional[float] = None) -> torch.Tensor:
    """``clamp(act(x + bias) * gain, -clamp, clamp)``, the bias along dimension 1; each step optional."""
    if bias is not None:
        x = x + bias.reshape((1, -1) + (1,) * (x.ndim - 2))
    x = ACTIVATIONS[act][0](x)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def fir_filter(taps: Sequence[float]) -> torch.Tensor:
    """The stored form of a resampling filter: 2-D (outer product) unless 1-D with >= 8 taps; sum 1."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim == 1 and f.numel() < 8:
        f = torch.outer(f, f)
    return f / f.sum()


def filter_size(f: torch.Tensor) -> int:
    return int(f.shape[-1])


def upfirdn(x: torch.Tensor, f: torch.Tensor, up: int = 1, pad: Sequence[int] = (0, 0, 0, 0),
            gain: float = 1.0) -> torch.Tensor:
    """Insert ``up - 1`` zeros after each pixel, pad (left, right, top, bottom; negative crops), then
    convolve each channel with ``f`` (a true convolution, scaled by ``gain``)."""
    b, c, h, w = x.shape
    if up > 1:
        x = F.pad(x.reshape(b, c, h, 1, w, 1), (0, up - 1, 0, 0, 0, up - 1)).reshape(b, c, h * up, w * up)
    left, right, top, bottom = pad
    x = F.pad(x, (max(left, 0), max(right, 0), max(top, 0), max(bottom, 0)))
    x = x[:, :, max(-top, 0): x.shape[2] - max(-bottom, 0), max(-left, 0): x.shape[3] - max(-right, 0)]
    k = f if f.ndim == 2 else torch.outer(f, f)
    k = (k * gain).to(x.dtype).flip([0, 1])
    return F.conv2d(x, k[None, None].expand(c, 1, *k.shape), groups=c)


def upsample2x(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Twice the size: zero insertion, then the FIR filter (gain 4 keeps the mean), centred."""
    n = filter_size(f)
    p0, p1 = (n + 1) // 2, (n - 2) // 2
    return upfirdn(x, f, up=2, pad=(p0, p1, p0, p1), gain=4.0)


def conv_up2x(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor, padding: int, groups: int) -> torch.Tensor:
    """A k x k convolution at twice the resolution: the stride-2 transposed convolution of ``x`` with
    ``weight`` (out, in/groups, k, k), then the FIR filter, the borders placed as a convolution with
    ``padding`` on the zero-inserted image followed by the filter would place them."""
    out, cin, kh, kw = weight.shape
    if groups == 1:
        wt = weight.transpose(0, 1)
    else:
        wt = weight.reshape(groups, out // groups, cin, kh, kw).transpose(1, 2).reshape(groups * cin, out // groups, kh, kw)
    y = F.conv_transpose2d(x, wt, stride=2, groups=groups)
    n = filter_size(f)
    px0, px1 = padding + (n + 1) // 2 - (kw - 1), padding + (n - 2) // 2 - (kw - 2)
    py0, py1 = padding + (n + 1) // 2 - (kh - 1), padding + (n - 2) // 2 - (kh - 2)
    return upfirdn(y, f, pad=(px0, px1, py0, py1), gain=4.0)


def modulated_conv(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                   up: int = 1, f: Optional[torch.Tensor] = None, fused: Union[bool, str] = True) -> torch.Tensor:
    """StyleGAN2's convolution: the weight's input channels scaled per sample by ``styles`` (B, in),
    then (``demodulate``) each output channel scaled to unit norm. ``fused``: as one grouped
    convolution with per-sample weights; otherwise by scaling the activations before and after a
    convolution with the shared weight (the same numbers, another order of operations); ``"auto"``: grouped
    weights only for one sample without gradients, the shared weight otherwise (the rule and its
    measurements: :func:`latentnav.generators.stylegan2.fused_by_default`)."""
    if fused == "auto":
        fused = fused_by_default(x, styles)
    batch, cin = x.shape[:2]
    cout, _, kh, kw = weight.shape
    padding = kw // 2
    w = dcoefs = None
    if demodulate or fused:
        w = weight[None] * styles.reshape(batch, 1, cin, 1, 1)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()

    def conv(inp, wgt, groups):
        if up == 1:
            return F.conv2d(inp, wgt, padding=padding, groups=groups)
        return conv_up2x(inp, wgt, f, padding, groups)

    if not fused:
        y = conv(x * styles.reshape(batch, cin, 1, 1), weight, 1)
        return y * dcoefs.reshape(batch, cout, 1, 1) if demodulate else y
    if demodulate:
        w = w * dcoefs.reshape(batch, cout, 1, 1, 1)
    y = conv(x.reshape(1, batch * cin, *x.shape[2:]), w.reshape(batch * cout, cin, kh, kw), batch)
    return y.reshape(batch, cout, *y.shape[2:])


def unit_second_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class Dense(nn.Module):
    """A fully connected layer with equalised learning rate: weight x lr / sqrt(in), bias x lr."""

    def __init__(self, in_features: int, out_features: int, activation: str = "linear", lr_multiplier: float = 1.0,
                 bias: bool = True) -> None:
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.zeros(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def effective_weight(self) -> torch.Tensor:
        return self.weight * self.weight_gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = None if self.bias is None else (self.bias * self.bias_gain if self.bias_gain != 1 else self.bias)
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, self.effective_weight().t())
        return bias_act(x.matmul(self.effective_weight().t()), b, self.activation, ACTIVATIONS[self.activation][1])


class Mapping(nn.Module):
    """z (and a class's one-hot c) -> w: both normalised to unit second moment, concatenated, then
    ``num_layers`` dense layers. ``w_avg`` is the running mean of w recorded in training."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_layers: int = 8, embed_features: Optional[int] = None,
                 layer_features: Optional[int] = None, activation: str = "lrelu", lr_multiplier: float = 0.01,
                 w_avg_beta: Optional[float] = 0.995) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_layers = z_dim, c_dim, w_dim, num_layers
        embed = (w_dim if embed_features is None else embed_features) if c_dim > 0 else 0
        width = w_dim if layer_features is None else layer_features
        sizes = [z_dim + embed] + [width] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = Dense(c_dim, embed)
        for i in range(num_layers):
            setattr(self, f"fc{i}", Dense(sizes[i], sizes[i + 1], activation, lr_multiplier))
        if w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None) -> torch.Tensor:
        parts = []
        if self.z_dim > 0:
            parts.append(unit_second_moment(z.float()))
        if self.c_dim > 0:
            parts.append(unit_second_moment(self.embed(c.float())))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return x


class StyledConv(nn.Module):
    """``conv0`` / ``conv1`` of a block: style affine, modulated 3x3 conv (x2 up-sampling for conv0),
    noise x strength, bias, activation, gain and the clamp (both scaled by the caller's gain)."""

    def __init__(self, cin: int, cout: int, w_dim: int, resolution: int, up: int = 1, kernel_size: int = 3,
                 use_noise: bool = True, activation: str = "lrelu", resample_filter: Sequence[float] = (1, 3, 3, 1),
                 conv_clamp: Optional[float] = None) -> None:
        super().__init__()
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        self.activation, self.conv_clamp = activation, conv_clamp
        self.act_gain = ACTIVATIONS[activation][1]
        self.affine = Dense(w_dim, cin)
        self.weight = nn.Parameter(torch.zeros(cout, cin, kernel_size, kernel_size))
        if use_noise:
            self.register_buffer("noise_const", torch.zeros(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.register_buffer("resample_filter", fir_filter(resample_filter))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: Optional[torch.Tensor], fused: bool,
                gain: float = 1.0) -> torch.Tensor:
        styles = self.affine(w)
        y = modulated_conv(x, self.weight, styles, True, self.up, self.resample_filter, fused)
        if noise is not None and self.use_noise:
            y = y + noise * self.noise_strength
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return bias_act(y, self.bias, self.activation, self.act_gain * gain, clamp)


class ToRGB(nn.Module):
    """1x1 modulated conv without demodulation (styles x 1/sqrt(C)), bias, clamp."""

    def __init__(self, cin: int, channels: int, w_dim: int, kernel_size: int = 1, conv_clamp: Optional[float] = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = Dense(w_dim, cin)
        self.weight = nn.Parameter(torch.zeros(channels, cin, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.weight_gain = 1 / math.sqrt(cin * kernel_size**2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused: bool) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        return bias_act(modulated_conv(x, self.weight, styles, demodulate=False, fused=fused), self.bias,
                        clamp=self.conv_clamp)


class Skip(nn.Module):
    """The resnet blocks' shortcut: 1x1 conv (1/sqrt(in)), x2 FIR up-sampling, no bias, no clamp."""

    def __init__(self, cin: int, cout: int, resample_filter: Sequence[float]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(cout, cin, 1, 1))
        self.register_buffer("resample_filter", fir_filter(resample_filter))
        self.weight_gain = 1 / math.sqrt(cin)

    def forward(self, x: torch.Tensor, gain: float) -> torch.Tensor:
        y = upsample2x(F.conv2d(x, self.weight * self.weight_gain), self.resample_filter)
        return y * gain


class Block(nn.Module):
    """One resolution of the synthesis network; ``num_conv`` + ``num_torgb`` w+ rows, of which the
    to-RGB's row is the next block's first."""

    def __init__(self, cin: int, cout: int, w_dim: int, resolution: int, img_channels: int, is_last: bool,
                 architecture: str = "skip", resample_filter: Sequence[float] = (1, 3, 3, 1),
                 conv_clamp: Optional[float] = None, **layer_kwargs) -> None:
        super().__init__()
        self.cin, self.resolution, self.architecture = cin, resolution, architecture
        self.register_buffer("resample_filter", fir_filter(resample_filter))
        if cin == 0:
            self.const = nn.Parameter(torch.zeros(cout, resolution, resolution))
        else:
            self.conv0 = StyledConv(cin, cout, w_dim, resolution, up=2, resample_filter=resample_filter,
                                    conv_clamp=conv_clamp, **layer_kwargs)
        self.conv1 = StyledConv(cout, cout, w_dim, resolution, resample_filter=resample_filter,
                                conv_clamp=conv_clamp, **layer_kwargs)
        self.num_conv = 1 if cin == 0 else 2
        self.num_torgb = int(is_last or architecture == "skip")
        if self.num_torgb:
            self.torgb = ToRGB(cout, img_channels, w_dim, conv_clamp=conv_clamp)
        if cin != 0 and architecture == "resnet":
            self.skip = Skip(cin, cout, resample_filter)

    def convs(self) -> list[StyledConv]:
        return [self.conv1] if self.cin == 0 else [self.conv0, self.conv1]

    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor], ws: torch.Tensor,
                noise: Sequence[Optional[torch.Tensor]], fused: bool):
        if self.cin == 0:
            x = self.conv1(self.const[None].expand(ws.shape[0], -1, -1, -1), ws[:, 0], noise[0], fused)
        elif self.architecture == "resnet":
            half = math.sqrt(0.5)
            y = self.skip(x, half)
            x = self.conv0(x, ws[:, 0], noise[0], fused)
            x = y + self.conv1(x, ws[:, 1], noise[1], fused, gain=half)
        else:
            x = self.conv0(x, ws[:, 0], noise[0], fused)
            x = self.conv1(x, ws[:, 1], noise[1], fused)
        if img is not None:
            img = upsample2x(img, self.resample_filter)
        if self.num_torgb:
            y = self.torgb(x, ws[:, self.num_conv], fused)
            img = y if img is None else img + y
        return x, img


class Synthesis(nn.Module):
    """w+ (B, num_ws, w_dim) -> image (B, img_channels, R, R), blocks ``b4`` ... ``bR``."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 0, **block_kwargs) -> None:
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.num_fp16_res = num_fp16_res  # recorded only: the maths runs in float32
        log2 = int(math.log2(img_resolution))
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        channels = {r: min(channel_base // r, channel_max) for r in self.block_resolutions}
        self.num_ws = 0
        for r in self.block_resolutions:
            block = Block(channels[r // 2] if r > 4 else 0, channels[r], w_dim, r, img_channels,
                          is_last=(r == img_resolution), **block_kwargs)
            self.num_ws += block.num_conv + (block.num_torgb if r == img_resolution else 0)
            setattr(self, f"b{r}", block)

    def blocks(self) -> list[Block]:
        return [getattr(self, f"b{r}") for r in self.block_resolutions]

    def noise_layers(self) -> list[StyledConv]:
        """Every convolution in synthesis order (b4.conv1, b8.conv0, b8.conv1, ...)."""
        return [conv for block in self.blocks() for conv in block.convs()]

    def forward(self, ws: torch.Tensor, noise: Union[str, Sequence[Optional[torch.Tensor]]] = "const",
                fused: bool = True) -> torch.Tensor:
        """``noise``: "const" (each layer's ``noise_const``), "random" (fresh N(0, 1) maps drawn in layer
        order, as the releases draw them), "none", or one map per convolution (unscaled: each layer
        multiplies by its ``noise_strength``; (B or 1, 1, r, r), or None for no noise there)."""
        ws = ws.float()
        x = img = None
        row, k = 0, 0
        for block in self.blocks():
            convs = block.convs()
            maps = []
            for conv in convs:
                if isinstance(noise, str):
                    maps.append(_layer_noise(conv, noise, ws.shape[0]))
                else:
                    m = noise[k]
                    maps.append(None if m is None else m.reshape(-1, 1, conv.resolution, conv.resolution).float())
                k += 1
            x, img = block(x, img, ws[:, row: row + block.num_conv + block.num_torgb], maps, fused)
            row += block.num_conv
        return img


def _layer_noise(conv: StyledConv, mode: str, batch: int) -> Optional[torch.Tensor]:
    if not conv.use_noise or mode == "none":
        return None
    if mode == "const":
        return conv.noise_const[None, None]
    r = conv.resolution
    return torch.randn([batch, 1, r, r], device=conv.noise_const.device)


class StyleGAN2Nvidia(nn.Module):
    """The generator: ``mapping`` (z, c -> w) and ``synthesis`` (w+ -> image); attribute and parameter
    names as in the releases' pickles. ``fused_modconv`` picks the modulated convolution's form."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: Optional[dict] = None, synthesis_kwargs: Optional[dict] = None,
                 fused_modconv: Union[bool, str] = "auto") -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = Synthesis(w_dim, img_resolution, img_channels, **(synthesis_kwargs or {}))
        self.num_ws = self.synthesis.num_ws
        self.mapping = Mapping(z_dim, c_dim, w_dim, **(mapping_kwargs or {}))
        self.fused_modconv = fused_modconv

    def map(self, z: torch.Tensor, c: Optional[torch.Tensor] = None) -> torch.Tensor:
        """w (B, w_dim) of z (B, z_dim) and, for a conditional net, c (B, c_dim) (one-hot)."""
        return self.mapping(z, c)

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        return w.unsqueeze(1).repeat(1, self.num_ws, 1)

    @staticmethod
    def truncate(ws: torch.Tensor, psi: float, centre: torch.Tensor, cutoff: Optional[int] = None) -> torch.Tensor:
        """``centre + psi (ws - centre)`` on the first ``cutoff`` rows of w+ (all when None); ``centre``
        (w_dim,) or one row per w+ row (num_ws, w_dim)."""
        if psi == 1:
            return ws
        centre = centre.to(ws)
        if cutoff is None:
            return torch.lerp(centre.expand_as(ws), ws, psi)
        head = centre[:cutoff] if centre.ndim == 2 else centre
        head = torch.lerp(head.expand_as(ws[:, :cutoff]), ws[:, :cutoff], psi)
        return torch.cat([head, ws[:, cutoff:]], dim=1)

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None, truncation_psi: float = 1.0,
                truncation_cutoff: Optional[int] = None, noise_mode: str = "const") -> torch.Tensor:
        ws = self.broadcast(self.map(z, c))
        if truncation_psi != 1:
            ws = self.truncate(ws, truncation_psi, self.mapping.w_avg, truncation_cutoff)
        return self.synthesis(ws, noise_mode, self.fused_modconv)

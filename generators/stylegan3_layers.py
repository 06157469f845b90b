"""StyleGAN3 ("Alias-Free GANs", Karras et al., NeurIPS 2021) generator, configs T and R, in plain torch.

Written from the paper and from the layout of the networks that NVIDIA's ``networks_stylegan3.py``
pickles: parameter and buffer names and shapes are those of the original's ``state_dict()``, so
its ``G_ema`` loads strictly. The maths runs in float32 on any device; the fused CUDA kernel of the
filtered leaky ReLU is replaced by its definition (upsample, filter, activate, filter, downsample).

Layout (``N`` = ``num_layers``, ``C_i`` channels, ``S_i`` spatial size of layer i)::

    mapping.fc{k}.weight / .bias          (w_dim, in), lr-multiplied, leaky ReLU; in = z_dim (+ w_dim with classes)
    mapping.embed.weight / .bias          (w_dim, c_dim), only when c_dim > 0
    mapping.w_avg                         (w_dim,) running mean of w (truncation centre)
    synthesis.input.weight                (C_0, C_0) mix of the Fourier features
    synthesis.input.affine.weight / bias  (4, w_dim) -> rotation (cos, sin) and translation (x, y)
    synthesis.input.transform             (3, 3) user transform of the output (identity by default)
    synthesis.input.freqs / .phases       (C_0, 2) / (C_0,) Fourier features
    synthesis.L{i}_{S_i}_{C_i}.affine     style affine (C_{i-1}, w_dim), i = 0..N (L{N} is the to-RGB layer)
                           .weight / .bias    (C_i, C_{i-1}, k, k) / (C_i,)
                           .magnitude_ema     () running mean square of the layer's input
                           .up_filter         (taps,) or absent (no upsampling filter)
                           .down_filter       (taps,), (taps, taps) radial (config R), or absent

The filters are not redesigned here: a network built by :func:`build_synthesis_schedule` gets
zero-filled filter buffers of the right shapes, which the checkpoint's state dict fills.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = float(np.sqrt(2))


# ------------------------------------------------------------------------------------------ primitives
def _pad_axis(x: torch.Tensor, dim: int, before: int, after: int) -> torch.Tensor:
    """Zeros added (or samples cropped, when negative) at both ends of axis ``dim`` (2: height, 3: width)."""
    n = x.shape[dim]
    x = x.narrow(dim, max(-before, 0), n - max(-before, 0) - max(-after, 0))
    widths = (max(before, 0), max(after, 0))
    return F.pad(x, widths if dim == 3 else (0, 0) + widths)


def _fir_axis(x: torch.Tensor, taps: torch.Tensor, dim: int, up: int, before: int, after: int, down: int) -> torch.Tensor:
    """Along axis ``dim`` only: insert ``up - 1`` zeros after each sample, pad (``before``, ``after``), true
    convolution ('valid') with the 1-D ``taps``, keep every ``down``-th sample. Computed without the inserted
    zeros (a strided transposed convolution) and only at the kept samples (a strided convolution)."""
    channels, k = x.shape[1], taps.shape[0]
    shape = (channels, 1, 1, k) if dim == 3 else (channels, 1, k, 1)
    taps = taps.reshape(shape[1:])
    stride = (1, down) if dim == 3 else (down, 1)
    if up == 1:
        x = _pad_axis(x, dim, before, after)
        return F.conv2d(x, taps.flip(0).expand(shape), stride=stride, groups=channels)
    length = x.shape[dim] * up + before + after - k + 1
    # y = the full convolution of the zero-stuffed signal; the padded 'valid' output is y[k - 1 - before:][:length]
    y = F.conv_transpose2d(x, taps.expand(shape), stride=(1, up) if dim == 3 else (up, 1), groups=channels)
    start = k - 1 - before
    y = _pad_axis(y, dim, -start, start + length - y.shape[dim])
    return y[:, :, :, ::down] if dim == 3 else y[:, :, ::down, :]


def resample(x: torch.Tensor, taps: Optional[torch.Tensor], up: int = 1, down: int = 1,
             pad: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Zero-insertion upsampling by ``up``, padding (left, right, top, bottom; negative crops), FIR filtering
    (true convolution, 'valid') with ``taps`` scaled by ``gain``, then keeping every ``down``-th sample.

    ``taps``: 1-D (separable: applied along the width and then the height, each carrying sqrt(gain)), 2-D
    (non-separable, carrying ``gain``), or None (the 1x1 identity tap)."""
    left, right, top, bottom = pad
    if taps is not None and taps.ndim == 1:
        taps = (taps * (gain ** 0.5)).to(x.dtype)
        x = _fir_axis(x, taps, 3, up, left, right, down)
        return _fir_axis(x, taps, 2, up, top, bottom, down)
    b, c, h, w = x.shape
    if up > 1:
        x = F.pad(x.reshape(b, c, h, 1, w, 1), (0, up - 1, 0, 0, 0, up - 1)).reshape(b, c, h * up, w * up)
    x = _pad_axis(_pad_axis(x, 3, left, right), 2, top, bottom)
    if taps is None:
        x = x * gain if gain != 1 else x
        return x[:, :, ::down, ::down] if down > 1 else x
    kernel = (taps * gain).to(x.dtype).flip([0, 1])
    return F.conv2d(x, kernel.expand(c, 1, *kernel.shape), stride=down, groups=c)


def filtered_leaky_relu(x: torch.Tensor, bias: torch.Tensor, up_taps: Optional[torch.Tensor],
                        down_taps: Optional[torch.Tensor], up: int, down: int, pad: tuple[int, int, int, int],
                        gain: float, slope: float, clamp: Optional[float]) -> torch.Tensor:
    """The paper's alias-suppressing nonlinearity, evaluated directly: add the bias, upsample by ``up`` with
    ``up_taps`` (signal gain up**2 for the inserted zeros), leaky ReLU times ``gain``, clamp to +-``clamp``,
    low-pass with ``down_taps`` and keep every ``down``-th sample."""
    x = x + bias.to(x.dtype).reshape(1, -1, 1, 1)
    x = resample(x, up_taps, up=up, pad=pad, gain=float(up * up))
    x = F.leaky_relu(x, slope) if slope != 1 else x
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return resample(x, down_taps, down=down)


class AffineLayer(nn.Module):
    """Dense layer with run-time weight scaling (``lr_multiplier / sqrt(in)``) and bias scaling
    (``lr_multiplier``); optionally followed by leaky ReLU (slope 0.2) times sqrt(2)."""

    def __init__(self, in_features: int, out_features: int, lrelu: bool = False, lr_multiplier: float = 1.0) -> None:
        super().__init__()
        self.in_features, self.out_features, self.lrelu = in_features, out_features, lrelu
        self.weight = nn.Parameter(torch.zeros(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.weight_gain = float(lr_multiplier / np.sqrt(in_features))
        self.bias_gain = float(lr_multiplier)

    def effective_weight(self) -> torch.Tensor:
        """The (out, in) matrix actually applied: h = W x + b."""
        return self.weight * self.weight_gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.effective_weight().to(x.dtype)
        bias = self.bias.to(x.dtype)
        if self.bias_gain != 1:
            bias = bias * self.bias_gain
        if not self.lrelu:
            return torch.addmm(bias[None], x, weight.t())
        return F.leaky_relu(x.matmul(weight.t()) + bias[None], 0.2) * SQRT2


def rms_normalise(x: torch.Tensor) -> torch.Tensor:
    """Each row divided by its root mean square (with 1e-8 under the root)."""
    return x * (x.square().mean(1, keepdim=True) + 1e-8).rsqrt()


# ------------------------------------------------------------------------------------------ mapping
class MappingNetwork(nn.Module):
    """z (and a one-hot class c) -> w: RMS-normalised inputs, ``num_layers`` lr-multiplied dense layers."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int, num_layers: int = 2,
                 lr_multiplier: float = 0.01, w_avg_beta: float = 0.998) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, c_dim, w_dim, num_ws, num_layers
        if c_dim > 0:
            self.embed = AffineLayer(c_dim, w_dim)
        widths = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        for k in range(num_layers):
            setattr(self, f"fc{k}", AffineLayer(widths[k], widths[k + 1], lrelu=True, lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None) -> torch.Tensor:
        """w (B, w_dim) for z (B, z_dim) and, when conditional, c (B, c_dim) one-hot (or soft) labels."""
        x = rms_normalise(z.float())
        if self.c_dim > 0:
            x = torch.cat([x, rms_normalise(self.embed(c.float()))], dim=1)
        for k in range(self.num_layers):
            x = getattr(self, f"fc{k}")(x)
        return x


# ------------------------------------------------------------------------------------------ synthesis
@dataclass(frozen=True)
class LayerSpec:
    """Static description of one synthesis layer (derived from the network's init kwargs)."""

    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    up: int
    down: int
    up_taps: int
    down_taps: int
    radial: bool
    kernel: int
    is_torgb: bool
    padding: tuple[int, int, int, int]

    @property
    def name_suffix(self) -> str:
        return f"{self.out_size}_{self.out_channels}"


@dataclass(frozen=True)
class SynthesisSchedule:
    """The frequency plan of the paper (Sec. 3-4, appendix): per-layer cutoffs and stopbands grow
    geometrically from the first layer to half the resolution, reached ``num_critical`` layers early."""

    input_channels: int
    input_size: int
    input_sampling_rate: float
    input_bandwidth: float
    layers: tuple[LayerSpec, ...]


def build_synthesis_schedule(img_resolution: int, img_channels: int, channel_base: int = 32768,
                             channel_max: int = 512, num_layers: int = 14, num_critical: int = 2,
                             first_cutoff: float = 2, first_stopband: float = 2 ** 2.1,
                             last_stopband_rel: float = 2 ** 0.3, margin_size: int = 10,
                             conv_kernel: int = 3, filter_size: int = 6, lrelu_upsampling: int = 2,
                             use_radial_filters: bool = False) -> SynthesisSchedule:
    n = num_layers
    # Layer i reaches the final band limit at i = n - num_critical and stays there.
    progress = np.minimum(np.arange(n + 1) / (n - num_critical), 1)
    final_cutoff = img_resolution / 2
    cutoff = first_cutoff * (final_cutoff / first_cutoff) ** progress
    stopband = first_stopband * (final_cutoff * last_stopband_rel / first_stopband) ** progress
    rate = np.exp2(np.ceil(np.log2(np.minimum(2 * stopband, img_resolution))))
    size = rate + 2 * margin_size
    size[-2:] = img_resolution  # the last two layers work on the image itself, without margin
    channels = np.rint(np.minimum(channel_base / 2 / cutoff, channel_max))
    channels[-1] = img_channels

    specs = []
    for i in range(n + 1):
        j = max(i - 1, 0)
        is_torgb = i == n
        critical = i >= n - num_critical
        in_rate, out_rate = int(rate[j]), int(rate[i])
        work_rate = max(in_rate, out_rate) * (1 if is_torgb else lrelu_upsampling)
        up, down = int(np.rint(work_rate / in_rate)), int(np.rint(work_rate / out_rate))
        if in_rate * up != work_rate or out_rate * down != work_rate:
            raise ValueError(f"layer {i}: sampling rates {in_rate} -> {out_rate} are not integer ratios of {work_rate}")
        up_taps = filter_size * up if up > 1 and not is_torgb else 1
        down_taps = filter_size * down if down > 1 and not is_torgb else 1
        kernel = 1 if is_torgb else conv_kernel
        in_size, out_size = int(size[j]), int(size[i])
        # Pad (in upsampled samples) so that, after the 'full' convolution, the two 'valid' filters and the
        # decimation, exactly out_size samples remain, centred as in the paper's symmetric convention.
        total = (out_size - 1) * down + 1 - (in_size + kernel - 1) * up + up_taps + down_taps - 2
        lo = (total + up) // 2
        hi = total - lo
        specs.append(LayerSpec(
            in_channels=int(channels[j]), out_channels=int(channels[i]), in_size=in_size, out_size=out_size,
            up=up, down=down, up_taps=up_taps, down_taps=down_taps,
            radial=bool(use_radial_filters and not critical), kernel=kernel, is_torgb=is_torgb,
            padding=(lo, hi, lo, hi)))
    return SynthesisSchedule(input_channels=int(channels[0]), input_size=int(size[0]),
                             input_sampling_rate=float(rate[0]), input_bandwidth=float(cutoff[0]),
                             layers=tuple(specs))


class FourierInput(nn.Module):
    """The synthesis input: a bank of sinusoids on a grid of ``size`` samples at ``sampling_rate``, rotated and
    translated by a w-dependent affine (then by the user ``transform``), faded out where a transform pushes a
    frequency beyond the band, and mixed by a learned (C, C) matrix."""

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float) -> None:
        super().__init__()
        self.channels, self.size, self.sampling_rate, self.bandwidth = channels, size, sampling_rate, bandwidth
        self.weight = nn.Parameter(torch.zeros(channels, channels))
        self.affine = AffineLayer(w_dim, 4)
        self.register_buffer("transform", torch.eye(3))
        self.register_buffer("freqs", torch.zeros(channels, 2))
        self.register_buffer("phases", torch.zeros(channels))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        batch = w.shape[0]
        params = self.affine(w)  # (cos, sin, tx, ty), up to the scale of the rotation part
        params = params / params[:, :2].norm(dim=1, keepdim=True)
        cos, sin, tx, ty = params.unbind(1)
        rotation = torch.eye(3, device=w.device, dtype=w.dtype).repeat(batch, 1, 1)
        rotation[:, 0, 0], rotation[:, 0, 1], rotation[:, 1, 0], rotation[:, 1, 1] = cos, -sin, sin, cos
        translation = torch.eye(3, device=w.device, dtype=w.dtype).repeat(batch, 1, 1)
        translation[:, 0, 2], translation[:, 1, 2] = -tx, -ty
        m = rotation @ translation @ self.transform[None]

        freqs = self.freqs[None]
        phases = self.phases[None] + (freqs @ m[:, :2, 2:]).squeeze(2)
        freqs = freqs @ m[:, :2, :2]
        fade = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)

        theta = torch.zeros(1, 2, 3, device=w.device)
        theta[0, 0, 0] = theta[0, 1, 1] = 0.5 * self.size / self.sampling_rate
        grid = F.affine_grid(theta, [1, 1, self.size, self.size], align_corners=False)  # (1, H, W, 2): x, y
        x = (grid.unsqueeze(3) @ freqs.transpose(1, 2)[:, None, None]).squeeze(3)  # (B, H, W, C)
        x = torch.sin((x + phases[:, None, None]) * (2 * np.pi)) * fade[:, None, None]
        x = x @ (self.weight / np.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)


def modulated_conv(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool,
                   input_gain: torch.Tensor, padding: int) -> torch.Tensor:
    """Per-sample convolution with ``weight`` scaled by ``styles`` along its input channels.

    With demodulation, the weight (per output channel) and the styles (over the whole batch) are first brought to
    unit RMS, and every modulated output filter to unit norm. ``input_gain`` (1/RMS of the layer's input, as
    tracked in training) scales the input channels afterwards."""
    batch, in_channels = styles.shape
    out_channels, _, kh, kw = weight.shape
    if demodulate:
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    w = weight[None] * styles[:, None, :, None, None]
    if demodulate:
        w = w * (w.square().sum([2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    w = w * input_gain.expand(batch, in_channels)[:, None, :, None, None]
    x = F.conv2d(x.reshape(1, batch * in_channels, *x.shape[2:]), w.reshape(batch * out_channels, in_channels, kh, kw),
                 padding=padding, groups=batch)
    return x.reshape(batch, out_channels, *x.shape[2:])


class SynthesisLayer(nn.Module):
    """Modulated convolution followed by the filtered leaky ReLU (or, for the to-RGB layer, a 1x1 modulated
    convolution without demodulation, bias and clamp only)."""

    def __init__(self, w_dim: int, spec: LayerSpec, conv_clamp: Optional[float]) -> None:
        super().__init__()
        self.spec, self.conv_clamp = spec, conv_clamp
        self.affine = AffineLayer(w_dim, spec.in_channels)
        self.weight = nn.Parameter(torch.zeros(spec.out_channels, spec.in_channels, spec.kernel, spec.kernel))
        self.bias = nn.Parameter(torch.zeros(spec.out_channels))
        self.register_buffer("magnitude_ema", torch.ones([]))
        self.register_buffer("up_filter", torch.zeros(spec.up_taps) if spec.up_taps > 1 else None)
        down_shape = (spec.down_taps,) * (2 if spec.radial else 1)
        self.register_buffer("down_filter", torch.zeros(down_shape) if spec.down_taps > 1 else None)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        styles = self.affine(w)
        if spec.is_torgb:
            styles = styles * float(1 / np.sqrt(spec.in_channels * spec.kernel ** 2))
        x = modulated_conv(x, self.weight, styles, demodulate=not spec.is_torgb,
                           input_gain=self.magnitude_ema.rsqrt(), padding=spec.kernel - 1)
        gain, slope = (1.0, 1.0) if spec.is_torgb else (SQRT2, 0.2)
        return filtered_leaky_relu(x, self.bias, self.up_filter, self.down_filter, spec.up, spec.down, spec.padding,
                                   gain, slope, self.conv_clamp)


class SynthesisNetwork(nn.Module):
    """w+ (B, num_layers + 2, w_dim) -> image: Fourier input (row 0), then layer i reads row i + 1."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, schedule: SynthesisSchedule,
                 conv_clamp: Optional[float] = 256, output_scale: float = 0.25) -> None:
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.output_scale = output_scale
        self.num_ws = len(schedule.layers) + 1
        self.input = FourierInput(w_dim, schedule.input_channels, schedule.input_size,
                                  schedule.input_sampling_rate, schedule.input_bandwidth)
        self.layer_names = []
        for i, spec in enumerate(schedule.layers):
            name = f"L{i}_{spec.name_suffix}"
            setattr(self, name, SynthesisLayer(w_dim, spec, conv_clamp))
            self.layer_names.append(name)

    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        rows = ws.float().unbind(1)
        x = self.input(rows[0])
        for name, w in zip(self.layer_names, rows[1:]):
            x = getattr(self, name)(x, w)
        return x * self.output_scale if self.output_scale != 1 else x


class StyleGAN3Network(nn.Module):
    """``mapping`` and ``synthesis`` under the names of the original's ``Generator``; ``schedule`` takes the
    keyword arguments of :func:`build_synthesis_schedule`, ``mapping`` those of :class:`MappingNetwork`."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping: dict, schedule: dict, conv_clamp: Optional[float] = 256, output_scale: float = 0.25) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.schedule = build_synthesis_schedule(img_resolution, img_channels, **schedule)
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, self.schedule,
                                          conv_clamp=conv_clamp, output_scale=output_scale)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **mapping)

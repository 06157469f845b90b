"""BigGAN-deep in the layout of the ``pytorch-pretrained-biggan`` release (``pytorch_model.bin`` + ``config.json``).

Written from the release's file format (parameter names and shapes are the format) and the BigGAN paper
(Brock, Donahue & Simonyan, ICLR 2019, BigGAN-deep: bottleneck residual blocks, a shared class embedding
concatenated with z, self-attention at one resolution). Evaluation only.

What the release holds (``torch.save(model.state_dict())``)::

    embeddings.weight                             (z_dim, num_classes): class one-hot -> embedding, no bias
    generator.gen_z.{weight_orig,weight_u,weight_v,bias}
                                                  spectrally normalised linear, (z_dim*2) -> 4*4*16*ch,
                                                  its output read as (4, 4, C) then made channels-first
    generator.layers.{k}.bn_{0..3}.running_means / running_vars
                                                  (n_stats, C): batch-norm statistics for n_stats truncation
                                                  values spread over [0, 1]
    generator.layers.{k}.bn_{0..3}.{scale,offset}.{weight_orig,weight_u,weight_v}
                                                  class-conditional gain (1 + scale) and offset, read from
                                                  the condition vector cat(z, embedding)
    generator.layers.{k}.conv_{0..3}.{weight_orig,weight_u,weight_v,bias}
                                                  1x1 down, 3x3, 3x3, 1x1 up (the bottleneck), width in/4
    generator.layers.{a}.snconv1x1_{theta,phi,g,o_conv}.{weight_orig,weight_u,weight_v}, .gamma
                                                  self-attention, inserted before block ``attention_layer_position``
    generator.bn.{running_means,running_vars,weight,bias}, generator.conv_to_rgb.*
                                                  last batch norm (not conditional), 3x3 conv to ch
                                                  channels of which the first 3 are the image

Spectral norm is torch's ``nn.utils.spectral_norm`` format: ``weight_orig`` and the stored singular vectors
``weight_u`` / ``weight_v``; at evaluation the weight is ``weight_orig / (u . W v)`` with W the weight as
(out, -1), without a power-iteration step.

Truncation: the release takes psi in (0, 1] and selects the batch-norm statistics by it. With
``s = 1 / (n_stats - 1)`` and ``(f, i) = modf(psi / s)``, slot ``i`` is used when f = 0, otherwise
``f * stats[i] + (1 - f) * stats[i + 1]`` (the release weights the lower slot by the fraction: kept as it
is, so that images equal the release's). z itself is not scaled: the release's users draw z from a normal
truncated to [-2, 2] times psi (:meth:`BigGANDeepAdapter.sample_truncated`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from latentnav.errors import ConfigError, DataFormatError
from latentnav.generators.base import FrozenGenerator
from latentnav.safe_load import strict_load_state_dict

FORMAT = "pytorch-pretrained-biggan"
#: The defaults of the release's config (its 128 px model); a config file's keys override them.
DEFAULT_LAYERS = ((False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8),
                  (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1))


# --------------------------------------------------------------------------------------------- shared helpers
def truncated_normal(n: int, d: int, threshold: float = 2.0, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """(n, d) standard normal values conditioned on |x| <= ``threshold`` (redrawn until inside)."""
    out = torch.randn(n, d, generator=generator)
    outside = out.abs() > threshold
    while bool(outside.any()):
        out[outside] = torch.randn(int(outside.sum()), generator=generator)
        outside = out.abs() > threshold
    return out


def sample_truncated(adapter: FrozenGenerator, n: int, psi: float, seed: Optional[int] = None,
                     threshold: float = 2.0) -> torch.Tensor:
    """The BigGAN releases' truncated z: ``psi`` times a normal truncated to [-threshold, threshold]."""
    if not 0.0 < float(psi) <= 1.0:
        raise ConfigError(f"truncation: expected psi in (0, 1], got {psi}")
    generator = torch.Generator()
    generator.manual_seed(seed) if seed is not None else generator.seed()
    return (float(psi) * truncated_normal(n, adapter.z_dim, threshold, generator)).to(adapter.device)


def self_attention(x: torch.Tensor, theta: nn.Module, phi: nn.Module, g: nn.Module, out: nn.Module,
                   gamma: torch.Tensor) -> torch.Tensor:
    """SAGAN's non-local block as both BigGAN releases run it: keys and values max-pooled 2x2, channels
    C/8 for queries and keys, C/2 for values, output ``x + gamma * out(attended values)``."""
    b, c, h, w = x.shape
    queries = theta(x).reshape(b, c // 8, h * w)
    keys = F.max_pool2d(phi(x), 2, 2).reshape(b, c // 8, h * w // 4)
    values = F.max_pool2d(g(x), 2, 2).reshape(b, c // 2, h * w // 4)
    attention = torch.softmax(torch.bmm(queries.transpose(1, 2), keys), dim=-1)
    attended = torch.bmm(values, attention.transpose(1, 2)).reshape(b, c // 2, h, w)
    return x + gamma * out(attended)


# --------------------------------------------------------------------------------------------- layers
class _TorchSpectralNorm(nn.Module):
    """A weight in torch's spectral-norm format: ``weight_orig`` with stored ``weight_u`` (out,), ``weight_v`` (in,)."""

    def __init__(self, weight_shape: tuple[int, ...], bias: bool) -> None:
        super().__init__()
        out = weight_shape[0]
        self.weight_orig = nn.Parameter(torch.empty(weight_shape))
        self.bias = nn.Parameter(torch.empty(out)) if bias else None
        self.register_buffer("weight_u", torch.empty(out))
        self.register_buffer("weight_v", torch.empty(math.prod(weight_shape[1:])))

    def sigma(self) -> torch.Tensor:
        """The stored estimate of the largest singular value, u . (W v)."""
        matrix = self.weight_orig.reshape(self.weight_orig.shape[0], -1)
        return torch.dot(self.weight_u, torch.mv(matrix, self.weight_v))

    def effective_weight(self) -> torch.Tensor:
        return self.weight_orig / self.sigma()


class SNLinear(_TorchSpectralNorm):
    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__((out_features, in_features), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)


class SNConv2d(_TorchSpectralNorm):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> None:
        super().__init__((out_channels, in_channels, kernel_size, kernel_size), bias)
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.effective_weight(), self.bias, padding=self.padding)


class TruncationBatchNorm(nn.Module):
    """Batch norm with fixed statistics per truncation slot; class-conditional (gain 1 + scale(c), offset(c)
    from the condition vector c) or with a plain learned ``weight`` / ``bias``."""

    def __init__(self, channels: int, n_stats: int, eps: float, condition_dim: Optional[int] = None) -> None:
        super().__init__()
        self.eps = eps
        self.n_stats = n_stats
        self.register_buffer("running_means", torch.empty(n_stats, channels))
        self.register_buffer("running_vars", torch.empty(n_stats, channels))
        self.conditional = condition_dim is not None
        if self.conditional:
            self.scale = SNLinear(condition_dim, channels, bias=False)
            self.offset = SNLinear(condition_dim, channels, bias=False)
        else:
            self.weight = nn.Parameter(torch.empty(channels))
            self.bias = nn.Parameter(torch.empty(channels))

    def statistics(self, truncation: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, var) for psi: a slot, or a blend of two neighbours (weights as the release's, see module doc)."""
        fraction, slot = math.modf(truncation / (1.0 / (self.n_stats - 1)))
        slot = int(slot)
        if fraction == 0.0:
            return self.running_means[slot], self.running_vars[slot]
        mean = self.running_means[slot] * fraction + self.running_means[slot + 1] * (1 - fraction)
        var = self.running_vars[slot] * fraction + self.running_vars[slot + 1] * (1 - fraction)
        return mean, var

    def forward(self, x: torch.Tensor, truncation: float, condition: Optional[torch.Tensor] = None) -> torch.Tensor:
        mean, var = self.statistics(truncation)
        if not self.conditional:
            return F.batch_norm(x, mean, var, self.weight, self.bias, training=False, momentum=0.0, eps=self.eps)
        gain = 1 + self.scale(condition)[:, :, None, None]
        shift = self.offset(condition)[:, :, None, None]
        return (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps) * gain + shift


class BottleneckBlock(nn.Module):
    """BigGAN-deep's residual block: BN-ReLU-1x1 (C -> C/4), BN-ReLU-[up]-3x3, BN-ReLU-3x3, BN-ReLU-1x1
    (C/4 -> C'), plus the input, its first C' channels kept when C' < C, nearest-upsampled when ``up``."""

    def __init__(self, in_channels: int, out_channels: int, condition_dim: int, up: bool, n_stats: int, eps: float) -> None:
        super().__init__()
        mid = in_channels // 4
        self.up = up
        self.out_channels = out_channels
        widths = ((in_channels, mid, 1), (mid, mid, 3), (mid, mid, 3), (mid, out_channels, 1))
        for i, (cin, cout, k) in enumerate(widths):
            setattr(self, f"bn_{i}", TruncationBatchNorm(cin, n_stats, eps, condition_dim))
            setattr(self, f"conv_{i}", SNConv2d(cin, cout, k))

    def forward(self, x: torch.Tensor, condition: torch.Tensor, truncation: float) -> torch.Tensor:
        h = x
        for i in range(4):
            h = F.relu(getattr(self, f"bn_{i}")(h, truncation, condition))
            if i == 1 and self.up:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = getattr(self, f"conv_{i}")(h)
        skip = x[:, :self.out_channels] if self.out_channels != x.shape[1] else x
        if self.up:
            skip = F.interpolate(skip, scale_factor=2, mode="nearest")
        return h + skip


class SelfAttention(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.snconv1x1_theta = SNConv2d(channels, channels // 8, 1, bias=False)
        self.snconv1x1_phi = SNConv2d(channels, channels // 8, 1, bias=False)
        self.snconv1x1_g = SNConv2d(channels, channels // 2, 1, bias=False)
        self.snconv1x1_o_conv = SNConv2d(channels // 2, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.empty(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self_attention(x, self.snconv1x1_theta, self.snconv1x1_phi, self.snconv1x1_g,
                              self.snconv1x1_o_conv, self.gamma)


@dataclass
class BigGANDeepConfig:
    """The release's ``config.json`` (``layers``: (up-sample, in, out) channel multiples of ``channel_width``)."""

    output_dim: int = 128
    z_dim: int = 128
    class_embed_dim: int = 128
    channel_width: int = 128
    num_classes: int = 1000
    layers: tuple = DEFAULT_LAYERS
    attention_layer_position: int = 8
    eps: float = 1e-4
    n_stats: int = 51
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: dict, source: str) -> "BigGANDeepConfig":
        """The release's defaults overridden by ``values``; a key of the wrong type is one line."""
        if not isinstance(values, dict):
            raise DataFormatError(f"{source}: a BigGAN-deep config is a JSON object, got {type(values).__name__}")
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        config = cls(extra={k: v for k, v in values.items() if k not in known})
        for key in known & set(values):
            setattr(config, key, values[key])
        try:
            for key in ("output_dim", "z_dim", "channel_width", "num_classes", "attention_layer_position", "n_stats"):
                value = getattr(config, key)
                if isinstance(value, bool) or int(value) != value or value < 0:
                    raise ValueError(f"{key} {value!r}")
                setattr(config, key, int(value))
            config.eps = float(config.eps)
            config.layers = tuple((bool(up), int(a), int(b)) for up, a, b in config.layers)
        except (TypeError, ValueError) as e:
            raise DataFormatError(f"{source}: bad BigGAN-deep config ({e})") from None
        if config.n_stats < 2 or not config.layers or config.layers[0][1] != 16 or config.layers[-1][2] != 1:
            raise DataFormatError(f"{source}: bad BigGAN-deep config (n_stats >= 2, layers from 16 to 1 channel "
                                  f"multiples expected; got n_stats {config.n_stats}, layers {list(config.layers)})")
        for up, cin, cout in config.layers:
            if cout not in (cin, cin // 2):
                raise DataFormatError(f"{source}: bad BigGAN-deep config (a block keeps or halves its channels; "
                                      f"got {cin} -> {cout})")
        ups = sum(up for up, _, _ in config.layers)
        if 4 * 2 ** ups != config.output_dim:
            raise DataFormatError(f"{source}: bad BigGAN-deep config ({ups} up-sampling blocks make "
                                  f"{4 * 2 ** ups} px, output_dim says {config.output_dim})")
        return config

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "extra"}
        out["layers"] = [list(layer) for layer in self.layers]
        return dict(self.extra, **out)


class BigGANDeepGenerator(nn.Module):
    """The release's ``Generator``: condition vector cat(z, class embedding) -> image."""

    def __init__(self, config: BigGANDeepConfig) -> None:
        super().__init__()
        self.config = config
        ch, cond = config.channel_width, 2 * config.z_dim
        self.gen_z = SNLinear(cond, 4 * 4 * 16 * ch)
        layers: list[nn.Module] = []
        for i, (up, cin, cout) in enumerate(config.layers):
            if i == config.attention_layer_position:
                layers.append(SelfAttention(ch * cin))
            layers.append(BottleneckBlock(ch * cin, ch * cout, cond, up, config.n_stats, config.eps))
        self.layers = nn.ModuleList(layers)
        self.bn = TruncationBatchNorm(ch, config.n_stats, config.eps)
        self.conv_to_rgb = SNConv2d(ch, ch, 3)

    def forward(self, condition: torch.Tensor, truncation: float) -> torch.Tensor:
        ch = self.config.channel_width
        h = self.gen_z(condition).reshape(-1, 4, 4, 16 * ch).permute(0, 3, 1, 2).contiguous()
        for layer in self.layers:
            h = layer(h, condition, truncation) if isinstance(layer, BottleneckBlock) else layer(h)
        h = self.conv_to_rgb(F.relu(self.bn(h, truncation)))
        return torch.tanh(h[:, :3])


class BigGANDeep(nn.Module):
    """The release's top module: ``embeddings`` (one-hot -> z_dim, no bias) and ``generator``."""

    def __init__(self, config: BigGANDeepConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = nn.Linear(config.num_classes, config.z_dim, bias=False)
        self.generator = BigGANDeepGenerator(config)

    def forward(self, z: torch.Tensor, class_vector: torch.Tensor, truncation: float) -> torch.Tensor:
        return self.generator(torch.cat((z, self.embeddings(class_vector)), dim=1), truncation)


# --------------------------------------------------------------------------------------------- adapter
class BigGANDeepAdapter(FrozenGenerator):
    """BigGAN-deep behind the contract: z (z_dim,) ~ N(0, I) and a class id per sample.

    ``truncation`` psi in (0, 1] selects the batch-norm statistics (1: none); z is not scaled, give
    truncated z for the paper's truncation trick (:meth:`sample_truncated`). psi = 0 has no statistics
    and a ``truncation_latent`` has no meaning here: both refused in one line.
    ``latent_weights("z")``: the columns of the first linear layer (``generator.gen_z``, after spectral
    norm) that read z; the other half reads the class embedding."""

    feature_layer = "net.generator.gen_z"  # GANSpace's BigGAN layer: the first one on z (not the class embedding)

    latent_spaces = ("z",)

    def __init__(self, net: BigGANDeep, identity: Optional[dict] = None) -> None:
        config = net.config
        super().__init__(config.output_dim, config.z_dim, identity, num_classes=config.num_classes)
        self.net = net
        self.freeze()

    def class_vectors(self, classes: torch.Tensor) -> torch.Tensor:
        return F.one_hot(classes, self.num_classes).to(torch.float32)

    def _synthesize(self, latent, space, truncation, noise_mode, truncation_latent, classes=None,
                    truncation_cutoff=None):
        if truncation <= 0.0:
            raise ConfigError("truncation: BigGAN-deep selects its batch-norm statistics by psi in (0, 1]; "
                              "psi = 0 has none (sample z with sample_truncated for the truncation trick)")
        if truncation_latent is not None:
            raise ConfigError("truncation_latent: BigGAN-deep's truncation selects batch-norm statistics and has "
                              "no centre latent; leave it out")
        return self.net(latent, self.class_vectors(classes), truncation)

    def sample_truncated(self, n: int, psi: float, seed: Optional[int] = None) -> torch.Tensor:
        """``n`` z as the release's users draw them at truncation psi: psi * N(0, I) truncated to [-2, 2].
        Synthesize them with the same ``truncation=psi``."""
        return sample_truncated(self, n, psi, seed)

    def latent_weights(self, space: str = "z", layers: Optional[Sequence[int]] = None):
        self._check_space(space)
        weight = self.net.generator.gen_z.effective_weight().detach()
        return [("generator.gen_z", weight[:, :self.z_dim].clone())]


# --------------------------------------------------------------------------------------------- loading
def recognise_biggan_deep(blob) -> bool:
    """A state dict of the pytorch-pretrained-biggan release (its class embedding and first SN linear)."""
    return isinstance(blob, dict) and "embeddings.weight" in blob and "generator.gen_z.weight_orig" in blob


def _config_candidates(source: Optional[str]) -> list[Path]:
    if not source:
        return []
    path = Path(source)
    names = []
    if "pytorch_model" in path.name:  # biggan-deep-128-pytorch_model.bin -> biggan-deep-128-config.json
        names.append(path.name.replace("pytorch_model.bin", "config.json").replace("pytorch_model", "config"))
    names += [path.stem + ".json", "config.json"]
    out: list[Path] = []
    for name in names:
        if (path.parent / name) not in out and name != path.name:
            out.append(path.parent / name)
    return out


def read_deep_config(config, source: Optional[str]) -> tuple[BigGANDeepConfig, str]:
    """(config, where it came from): ``config`` a dict or a JSON path; None: the JSON next to the weights."""
    if isinstance(config, BigGANDeepConfig):
        return config, "given"
    if isinstance(config, dict):
        return BigGANDeepConfig.from_dict(config, "generator option config"), "given"
    if config is None:
        tried = _config_candidates(source)
        found = next((p for p in tried if p.is_file()), None)
        if found is None:
            where = ", ".join(str(p) for p in tried) or "no file to look next to"
            raise ConfigError(f"{source or 'generator'}: a pytorch-pretrained-biggan state dict needs its config.json "
                              f"(not found: {where}); give it with the generator option config")
        config = found
    if not isinstance(config, (str, os.PathLike)):
        raise ConfigError(f"generator option config: expected a JSON file or a dict, got {type(config).__name__}")
    path = Path(config)
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"generator option config: cannot read {path} ({e.strerror or e})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataFormatError(f"{path}: not a JSON config ({str(e).splitlines()[0][:100]})") from None
    return BigGANDeepConfig.from_dict(values, str(path)), str(path)


def load_biggan_deep(blob: dict, identity: Optional[dict] = None, map_location="cpu", config=None) -> BigGANDeepAdapter:
    """A pytorch-pretrained-biggan state dict (``pytorch_model.bin`` read weights-only) as a frozen adapter.

    ``config``: the release's ``config.json`` (a path or its dict); default: the JSON next to
    ``identity["source"]`` (``<name>-config.json`` for ``<name>-pytorch_model.bin``, ``<stem>.json``,
    ``config.json``). The state dict loads strictly."""
    identity = dict(identity or {})
    source = identity.get("source")
    parsed, where = read_deep_config(config, source)
    net = BigGANDeep(parsed)
    state = {k: v for k, v in blob.items() if isinstance(k, str)}
    strict_load_state_dict(net, state, str(source or "generator"), what="pytorch-pretrained-biggan state dict")
    net = net.to(torch.device(map_location) if isinstance(map_location, str) else map_location)
    identity.update(format=FORMAT, config=parsed.to_dict(), config_source=where)
    return BigGANDeepAdapter(net, identity)

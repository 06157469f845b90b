"""BigGAN in the layout of BigGAN-PyTorch (``G.pth`` / ``G_ema.pth``; also GANLatentDiscovery's BigGAN).

Written from the state-dict format (names and shapes are the format) and the BigGAN paper (Brock, Donahue &
Simonyan, ICLR 2019: residual up-sampling blocks, class-conditional batch norm from a shared class
embedding, hierarchical z, self-attention, spectral norm). Evaluation only. GANLatentDiscovery
(Voynov & Babenko) ships a copy of the same generator whose ``G_ema.pth`` is BigGAN-PyTorch's ImageNet
128 px release: the same layout, loaded here as is.

The state dict (``torch.save(G.state_dict())``)::

    shared.weight                      (n_classes, shared_dim) class embedding (absent without G_shared,
                                       where each conditional BN reads the class id through its own embeddings)
    linear.{weight,bias,u0,sv0}        first layer: z (or z's first chunk with hier) -> C0 * bw * bw
    blocks.{i}.0.conv1 / conv2 / conv_sc .{weight,bias,u*,sv*}
                                       residual block i: BN-ReLU-up-3x3, BN-ReLU-3x3, shortcut up-1x1
    blocks.{i}.0.bn1 / bn2 .gain / .bias .{weight,u*,sv*}
                                       class-conditional BN: gain 1 + gain(y), offset bias(y), y the embedding
                                       (cat(embedding, z chunk i+1) with hier); statistics as below
    blocks.{i}.1.{theta,phi,g,o}.*, .gamma
                                       self-attention after block i (at its output resolution)
    output_layer.0.{gain,bias}, stats; output_layer.2.*
                                       BN (learned gain / bias) - ReLU - 3x3 conv to RGB, then tanh

Batch-norm statistics come in three layouts, chosen when the network was built: ``stored_mean`` /
``stored_var`` (the default), ``bn.stored_mean`` / ``bn.stored_var`` / ``bn.accumulation_counter`` (``mybn``:
the statistics divide by the counter only after standing statistics were accumulated in the same process,
option ``standing_stats``), ``bn.running_mean`` / ``bn.running_var`` (``cross_replica``: the original's
synchronised BN then ADDS gain and bias to the normalised activations at evaluation instead of scaling;
kept, so that images equal the original's); with ``norm_style`` nonorm the conditional BNs hold no statistics
and only scale and shift (the instance-norm style equals the default at evaluation).

Spectral norm (``u{i}`` (1, out) and ``sv{i}`` buffers): at evaluation the original still runs one power
step from the stored u0 without storing it, v = normalize(u0 W), u = normalize(v Wᵀ), sigma = v Wᵀ uᵀ,
and divides W (as (out, -1)) by sigma; ``sv`` is a training log and does not enter. Further ``u{i}``
(num_svs > 1) do not change the first singular value. ``SN_eps`` (default 1e-12) floors those norms,
``BN_eps`` (default 1e-5; 1e-4 for the TF Hub conversions) is the conditional batch norms' epsilon (the
last, unconditional one always uses 1e-5, as the original builds it): neither is in the
state dict, so both are load options (or read from a BigGAN-PyTorch / GANLatentDiscovery config dict).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from latentnav.errors import ConfigError, DataFormatError
from latentnav.generators.base import FrozenGenerator, truncate_z
from latentnav.generators.biggan_deep import sample_truncated, self_attention
from latentnav.safe_load import strict_load_state_dict

FORMAT = "biggan-pytorch"
BN_LAYOUTS = ("stored", "mybn", "cross_replica")


# --------------------------------------------------------------------------------------------- layers
class _SN(nn.Module):
    """A weight with BigGAN-PyTorch's spectral norm (``num_svs`` vectors u{i}, logs sv{i}); ``num_svs`` 0:
    a plain weight (``G_param`` other than SN)."""

    def __init__(self, weight_shape: tuple[int, ...], bias: bool, num_svs: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(weight_shape))
        self.bias = nn.Parameter(torch.empty(weight_shape[0])) if bias else None
        self.num_svs, self.eps = num_svs, eps
        for i in range(num_svs):
            self.register_buffer(f"u{i}", torch.empty(1, weight_shape[0]))
            self.register_buffer(f"sv{i}", torch.empty(1))

    def sigma(self) -> torch.Tensor:
        """One power step from the stored u0 (not stored back): the original's evaluation-time estimate."""
        matrix = self.weight.reshape(self.weight.shape[0], -1)
        v = F.normalize(torch.matmul(self.u0, matrix), eps=self.eps)
        u = F.normalize(torch.matmul(v, matrix.t()), eps=self.eps)
        return torch.squeeze(torch.matmul(torch.matmul(v, matrix.t()), u.t()))

    def effective_weight(self) -> torch.Tensor:
        return self.weight / self.sigma() if self.num_svs else self.weight


class SNLinear(_SN):
    def __init__(self, in_features: int, out_features: int, bias: bool, num_svs: int, eps: float) -> None:
        super().__init__((out_features, in_features), bias, num_svs, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)


class SNConv2d(_SN):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool, num_svs: int, eps: float) -> None:
        super().__init__((out_channels, in_channels, kernel_size, kernel_size), bias, num_svs, eps)
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.effective_weight(), self.bias, padding=self.padding)


class _Stats(nn.Module):
    """The ``bn`` submodule of the mybn / cross_replica layouts (statistics buffers only)."""

    def __init__(self, channels: int, layout: str) -> None:
        super().__init__()
        if layout == "mybn":
            self.register_buffer("stored_mean", torch.empty(channels))
            self.register_buffer("stored_var", torch.empty(channels))
            self.register_buffer("accumulation_counter", torch.empty(1))
        else:
            self.register_buffer("running_mean", torch.empty(channels))
            self.register_buffer("running_var", torch.empty(channels))
            self.register_buffer("num_batches_tracked", torch.empty((), dtype=torch.long))


class _Norm(nn.Module):
    """Fixed-statistics batch norm followed by a per-sample or learned gain (1 + g, or g) and bias,
    computed as each statistics layout of the original computes it (see the module doc)."""

    def __init__(self, channels: int, layout: str, eps: float, standing_stats: bool) -> None:
        super().__init__()
        self.layout, self.eps, self.standing_stats = layout, eps, standing_stats
        if layout == "stored":
            self.register_buffer("stored_mean", torch.empty(channels))
            self.register_buffer("stored_var", torch.empty(channels))
        elif layout in ("mybn", "cross_replica"):
            self.bn = _Stats(channels, layout)
        # "nonorm": no statistics at all

    def normalise(self, x: torch.Tensor, gain: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                  per_channel: bool) -> torch.Tensor:
        """``per_channel``: gain and bias are (C,) learned vectors (the unconditional BN), applied inside
        F.batch_norm in the default layout as the original does."""
        if self.layout == "stored":
            if per_channel:
                return F.batch_norm(x, self.stored_mean, self.stored_var, gain, bias, False, 0.1, self.eps)
            return F.batch_norm(x, self.stored_mean, self.stored_var, None, None, False, 0.1, self.eps) * gain + bias
        if per_channel:
            gain, bias = gain.reshape(1, -1, 1, 1), bias.reshape(1, -1, 1, 1)
        if self.layout == "cross_replica":
            out = F.batch_norm(x, self.bn.running_mean, self.bn.running_var, None, None, False, 0.1, self.eps)
            return out + gain + bias
        if self.layout == "mybn":
            mean, var = self.bn.stored_mean.reshape(1, -1, 1, 1), self.bn.stored_var.reshape(1, -1, 1, 1)
            if self.standing_stats:
                mean, var = mean / self.bn.accumulation_counter, var / self.bn.accumulation_counter
            scale = torch.rsqrt(var + self.eps) * gain
            return x * scale - (mean * scale - bias)
        return x * gain + bias


class ConditionalBN(_Norm):
    """``ccbn``: gain and bias from the conditioning vector (SN linears without bias) or, without a shared
    embedding, from the class id (embeddings ``gain.weight`` / ``bias.weight``, (n_classes, C))."""

    def __init__(self, channels: int, input_size: int, shared: bool, layout: str, num_svs: int, sn_eps: float,
                 bn_eps: float, standing_stats: bool) -> None:
        super().__init__(channels, layout, bn_eps, standing_stats)
        if shared:
            self.gain = SNLinear(input_size, channels, False, num_svs, sn_eps)
            self.bias = SNLinear(input_size, channels, False, num_svs, sn_eps)
        else:
            self.gain = nn.Embedding(input_size, channels)
            self.bias = nn.Embedding(input_size, channels)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gain = (1 + self.gain(y)).reshape(y.shape[0], -1, 1, 1)
        bias = self.bias(y).reshape(y.shape[0], -1, 1, 1)
        return self.normalise(x, gain, bias, per_channel=False)


class OutputBN(_Norm):
    """The last BN: learned ``gain`` / ``bias`` vectors. The original builds it without passing ``BN_eps``: its
    epsilon is always 1e-5."""

    EPS = 1e-5

    def __init__(self, channels: int, layout: str, standing_stats: bool) -> None:
        super().__init__(channels, layout, self.EPS, standing_stats)
        self.gain = nn.Parameter(torch.empty(channels))
        self.bias = nn.Parameter(torch.empty(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalise(x, self.gain, self.bias, per_channel=True)


class Attention(nn.Module):
    def __init__(self, channels: int, num_svs: int, eps: float) -> None:
        super().__init__()
        self.theta = SNConv2d(channels, channels // 8, 1, False, num_svs, eps)
        self.phi = SNConv2d(channels, channels // 8, 1, False, num_svs, eps)
        self.g = SNConv2d(channels, channels // 2, 1, False, num_svs, eps)
        self.o = SNConv2d(channels // 2, channels, 1, False, num_svs, eps)
        self.gamma = nn.Parameter(torch.empty(()))

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self_attention(x, self.theta, self.phi, self.g, self.o, self.gamma)


@dataclass
class BigGANPyTorchConfig:
    """What the generator's shape needs; all but the two epsilons and ``standing_stats`` read from the state dict."""

    channels: tuple[tuple[int, int], ...]        # (in, out) per block
    attention: tuple[bool, ...]                  # self-attention after block i
    bottom_width: int
    dim_z: int                                   # z's size (chunk * (blocks + 1) with hier)
    hier: bool
    z_chunk: int                                 # z's chunk size with hier, 0 without
    shared: bool
    shared_dim: int
    n_classes: int
    bn_layout: str                               # the conditional BNs' statistics ("nonorm": norm_style nonorm)
    output_bn_layout: str
    num_svs: int
    sn_eps: float = 1e-12
    bn_eps: float = 1e-5
    standing_stats: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def resolution(self) -> int:
        return self.bottom_width * 2 ** len(self.channels)

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "extra"}
        out["channels"] = [list(c) for c in self.channels]
        out["attention"] = list(self.attention)
        return out


class BigGANPyTorchGenerator(nn.Module):
    """BigGAN-PyTorch's ``Generator`` (eval), taking z and y = the class embedding (``shared(class)``) or, without
    a shared embedding, the class ids."""

    def __init__(self, config: BigGANPyTorchConfig) -> None:
        super().__init__()
        self.config = c = config
        if c.shared:
            self.shared = nn.Embedding(c.n_classes, c.shared_dim)
        bn_input = c.shared_dim + c.z_chunk if c.shared else c.n_classes
        self.linear = SNLinear(c.z_chunk if c.hier else c.dim_z, c.channels[0][0] * c.bottom_width ** 2, True,
                               c.num_svs, c.sn_eps)
        blocks = []
        for (cin, cout), attention in zip(c.channels, c.attention):
            block = nn.Module()
            block.conv1 = SNConv2d(cin, cout, 3, True, c.num_svs, c.sn_eps)
            block.conv2 = SNConv2d(cout, cout, 3, True, c.num_svs, c.sn_eps)
            block.conv_sc = SNConv2d(cin, cout, 1, True, c.num_svs, c.sn_eps)
            block.bn1 = ConditionalBN(cin, bn_input, c.shared, c.bn_layout, c.num_svs, c.sn_eps, c.bn_eps, c.standing_stats)
            block.bn2 = ConditionalBN(cout, bn_input, c.shared, c.bn_layout, c.num_svs, c.sn_eps, c.bn_eps, c.standing_stats)
            blocks.append(nn.ModuleList([block, Attention(cout, c.num_svs, c.sn_eps)] if attention else [block]))
        self.blocks = nn.ModuleList(blocks)
        last = c.channels[-1][1]
        self.output_layer = nn.Sequential(OutputBN(last, c.output_bn_layout, c.standing_stats), nn.ReLU(),
                                          SNConv2d(last, 3, 3, True, c.num_svs, c.sn_eps))

    @staticmethod
    def _residual(block: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(block.bn1(x, y)), scale_factor=2)
        x = F.interpolate(x, scale_factor=2)
        h = block.conv2(F.relu(block.bn2(block.conv1(h), y)))
        return h + block.conv_sc(x)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        c = self.config
        if c.hier:
            chunks = torch.split(z, c.z_chunk, 1)
            z, ys = chunks[0], [torch.cat([y, chunk], 1) for chunk in chunks[1:]]
        else:
            ys = [y] * len(self.blocks)
        h = self.linear(z).reshape(z.shape[0], -1, c.bottom_width, c.bottom_width)
        for blocklist, y_i in zip(self.blocks, ys):
            h = self._residual(blocklist[0], h, y_i)
            if len(blocklist) > 1:
                h = blocklist[1](h)
        return torch.tanh(self.output_layer(h))


# --------------------------------------------------------------------------------------------- config from a state dict
def _bn_layout(state: dict, prefix: str) -> str:
    if f"{prefix}.bn.running_mean" in state:
        return "cross_replica"
    if f"{prefix}.bn.stored_mean" in state:
        return "mybn"
    return "stored" if f"{prefix}.stored_mean" in state else "nonorm"


#: Keys of BigGAN-PyTorch's own configs (its ``state_dict.pth`` config, GANLatentDiscovery's
#: ``generator_config.json``) read here; the shape keys are checked against the state dict.
_CONFIG_EPS = {"BN_eps": "bn_eps", "SN_eps": "sn_eps"}


def infer_biggan_pytorch_config(state: dict, source: str, config: Optional[dict] = None, bn_eps: Optional[float] = None,
                                sn_eps: Optional[float] = None, standing_stats: bool = False) -> BigGANPyTorchConfig:
    """The generator's shape from the state dict; epsilons from the options, else ``config``'s ``BN_eps`` /
    ``SN_eps``, else the original's defaults (1e-5, 1e-12). ``config``'s ``dim_z``, ``hier``,
    ``shared_dim``, ``G_shared``, ``mybn``, ``cross_replica``, ``resolution``, ``n_classes`` are checked
    against the state dict (one line on a difference)."""
    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise DataFormatError(f"{source}: not a BigGAN-PyTorch generator state dict (no {key})")
        return tuple(state[key].shape)

    n_blocks = 0
    while f"blocks.{n_blocks}.0.conv1.weight" in state:
        n_blocks += 1
    if n_blocks == 0:
        raise DataFormatError(f"{source}: not a BigGAN-PyTorch generator state dict (no blocks.0.0.conv1.weight)")
    channels = tuple(shape(f"blocks.{i}.0.conv1.weight")[1::-1] for i in range(n_blocks))
    attention = tuple(f"blocks.{i}.1.theta.weight" in state for i in range(n_blocks))
    linear_out, linear_in = shape("linear.weight")
    bottom_width = round((linear_out / channels[0][0]) ** 0.5)
    if bottom_width < 1 or channels[0][0] * bottom_width ** 2 != linear_out:
        raise DataFormatError(f"{source}: linear.weight {linear_out} outputs do not make {channels[0][0]} "
                              "square feature maps")
    num_svs = 0
    while f"linear.u{num_svs}" in state:
        num_svs += 1
    shared = "shared.weight" in state
    bn_in = shape("blocks.0.0.bn1.gain.weight")
    if shared:
        n_classes, shared_dim = shape("shared.weight")
        z_chunk = bn_in[1] - shared_dim
        hier = z_chunk > 0
        if hier and z_chunk != linear_in:
            raise DataFormatError(f"{source}: hierarchical z chunks disagree (linear reads {linear_in}, "
                                  f"the batch norms {z_chunk})")
    else:
        n_classes, shared_dim, z_chunk, hier = bn_in[0], 0, 0, False
    dim_z = z_chunk * (n_blocks + 1) if hier else linear_in
    layout, output_layout = _bn_layout(state, "blocks.0.0.bn1"), _bn_layout(state, "output_layer.0")
    if output_layout == "nonorm" or (layout != output_layout and layout != "nonorm"):
        raise DataFormatError(f"{source}: batch-norm statistics of two kinds ({layout} in the blocks, "
                              f"{output_layout} at the output)")

    config = dict(config or {})
    if bn_eps is None:
        bn_eps = config.get("BN_eps", 1e-5)
    if sn_eps is None:
        sn_eps = config.get("SN_eps", 1e-12)
    inferred = BigGANPyTorchConfig(channels, attention, bottom_width, dim_z, hier, z_chunk if hier else 0, shared,
                                   shared_dim, n_classes, layout, output_layout, num_svs, float(sn_eps), float(bn_eps),
                                   bool(standing_stats))
    checks = {"hier": hier, "G_shared": shared, "n_classes": n_classes, "resolution": inferred.resolution,
              "mybn": output_layout == "mybn", "cross_replica": output_layout == "cross_replica"}
    if shared:
        checks["shared_dim"] = shared_dim
    if config.get("dim_z") is not None:
        # with hier the original rounds dim_z down to a multiple of the number of chunks
        given = int(config["dim_z"])
        checks["dim_z"] = dim_z
        config["dim_z"] = given // (n_blocks + 1) * (n_blocks + 1) if hier else given
    if config.get("cross_replica"):
        config.pop("mybn", None)  # cross_replica wins over mybn in the original
    for key, value in checks.items():
        if config.get(key) is not None and type(value)(config[key]) != value:
            raise ConfigError(f"{source}: the config says {key}={config[key]!r}, the state dict has {value!r}")
    if not (1e-30 < inferred.bn_eps < 1 and 0 < inferred.sn_eps < 1):
        raise ConfigError(f"BigGAN epsilons: expected BN_eps and SN_eps in (0, 1), got {bn_eps}, {sn_eps}")
    return inferred


def recognise_biggan_pytorch(blob) -> bool:
    """A BigGAN-PyTorch (or GANLatentDiscovery) generator state dict: its first linear, block 0 and output layer."""
    return (isinstance(blob, dict) and "linear.weight" in blob and "blocks.0.0.conv1.weight" in blob
            and "output_layer.0.gain" in blob)


# --------------------------------------------------------------------------------------------- adapter
class BigGANPyTorchAdapter(FrozenGenerator):
    """BigGAN-PyTorch behind the contract: z (dim_z,) ~ N(0, I) and a class id per sample (through the shared
    embedding). ``truncation`` psi scales z towards ``truncation_latent`` (default 0), as the original's
    sampling with z variance psi² does; :meth:`sample_truncated` gives the TF Hub convention (psi times a
    normal truncated to [-2, 2]), to synthesize with truncation 1.

    ``latent_weights("z")``: the first linear layer after spectral norm. With hierarchical z it reads only z's
    first chunk (the other chunks enter each block's batch norms): the matrix is (out, dim_z) with zero
    columns for the other chunks, so h = A @ z holds and SeFa's directions lie in the first chunk."""

    feature_layer = "net.linear"  # GANSpace reads z-space activations here (the first layer on z)

    latent_spaces = ("z",)

    def __init__(self, net: BigGANPyTorchGenerator, identity: Optional[dict] = None) -> None:
        c = net.config
        super().__init__(c.resolution, c.dim_z, identity, num_classes=c.n_classes)
        self.net = net
        self.freeze()

    def class_embedding(self, classes: torch.Tensor) -> torch.Tensor:
        """y as the original's callers make it: ``G.shared(classes)``, or the ids without a shared embedding."""
        return self.net.shared(classes) if self.net.config.shared else classes

    def _synthesize(self, latent, space, truncation, noise_mode, truncation_latent, classes=None,
                    truncation_cutoff=None):
        return self.net(truncate_z(latent, truncation, truncation_latent), self.class_embedding(classes))

    def sample_truncated(self, n: int, psi: float, seed: Optional[int] = None) -> torch.Tensor:
        return sample_truncated(self, n, psi, seed)

    def latent_weights(self, space: str = "z", layers: Optional[Sequence[int]] = None):
        self._check_space(space)
        weight = self.net.linear.effective_weight().detach()
        if self.net.config.hier:
            weight = torch.cat([weight, weight.new_zeros(weight.shape[0], self.z_dim - weight.shape[1])], 1)
        return [("linear", weight.clone())]


# --------------------------------------------------------------------------------------------- loading
OPTIONS = ("bn_eps", "sn_eps", "standing_stats")


def _read_config(config, source: str) -> Optional[dict]:
    if config is None or isinstance(config, dict):
        return config
    if not isinstance(config, (str, os.PathLike)):
        raise ConfigError(f"generator option config: expected a JSON file or a dict, got {type(config).__name__}")
    path = Path(config)
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"generator option config: cannot read {path} ({e.strerror or e})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataFormatError(f"{path}: not a JSON config ({str(e).splitlines()[0][:100]})") from None
    if not isinstance(values, dict):
        raise DataFormatError(f"{path}: a BigGAN-PyTorch config is a JSON object, got {type(values).__name__}")
    return values


def load_biggan_pytorch(blob: dict, identity: Optional[dict] = None, map_location="cpu", config=None,
                        **options) -> BigGANPyTorchAdapter:
    """A BigGAN-PyTorch ``G.pth`` / ``G_ema.pth`` state dict (read weights-only) as a frozen adapter.

    Options: ``bn_eps`` (default 1e-5; the TF Hub conversions use 1e-4), ``sn_eps`` (1e-12; the ImageNet
    release 1e-6), ``standing_stats`` (mybn layout: divide the statistics by the accumulation counter);
    ``config``: a BigGAN-PyTorch config (dict or JSON, e.g. GANLatentDiscovery's ``generator_config.json``)
    whose ``BN_eps`` / ``SN_eps`` are used and whose shape keys are checked. The state dict loads strictly."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"BigGAN-PyTorch options: unknown {', '.join(unknown)}; expected some of {', '.join(OPTIONS)}")
    identity = dict(identity or {})
    source = str(identity.get("source") or "generator")
    state = {k: v for k, v in blob.items() if isinstance(k, str)}
    parsed = infer_biggan_pytorch_config(state, source, _read_config(config, source), **options)
    net = BigGANPyTorchGenerator(parsed)
    strict_load_state_dict(net, state, source, what="BigGAN-PyTorch state dict")
    net = net.to(torch.device(map_location) if isinstance(map_location, str) else map_location)
    identity.update(format=FORMAT, config=parsed.to_dict())
    return BigGANPyTorchAdapter(net, identity)

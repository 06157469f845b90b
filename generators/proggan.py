"""The fixed 1024 px Progressive GAN (CelebA-HQ) that Voynov & Babenko's GANLatentDiscovery loads.

That checkpoint (``100_celeb_hq_network-snapshot-010403.pth``, from GAN-Dissection's release) is a plain
state dict of a fixed-width network: nothing in it or in the code that reads it varies the resolution or the
channels, so this module supports exactly that layout. Written from the file format and the ProGAN paper
(Karras et al. 2018: pixel-wise feature normalisation, equalised learning rate, nearest-neighbour
upsampling, leaky ReLU 0.2, a linear 1x1 to-RGB at the end).

State-dict layout (57 tensors, float32, 23.07 M parameters)::

    features.{i}.conv.weight    (out, in, k, k), no bias; i = 0..17
    features.{i}.wscale.scale   (1,)   the layer's equalised-learning-rate constant, stored as a tensor
    features.{i}.wscale.b       (out,) the bias, added after the scale
    output.conv.weight          (3, 16, 1, 1)
    output.wscale.scale / .b    (1,) / (3,)

Block i computes ``leaky_relu_0.2(scale * conv(up(pixel_norm(x))) + b)``: block 0 is a 4x4 convolution with
padding 3 applied to the latent as a (B, 512, 1, 1) map (so its output is 4x4); the even blocks 2, 4, ..., 16
double the resolution by nearest-neighbour upsampling before a 3x3 convolution (padding 1); the odd blocks are
3x3 convolutions at the same resolution. Channels: 512 up to 64 px, then 256, 128, 64, 32, 16. The output
layer is ``scale * conv1x1(pixel_norm(x)) + b`` with no activation. Pixel norm: ``x / sqrt(mean_c(x^2) + 1e-8)``.

The latent is z ~ N(0, I) of 512 values (GANLatentDiscovery samples ``torch.randn(B, 512, 1, 1)``); no other
preprocessing: the first pixel norm is the only normalisation, so scaling z never changes the image.

Output range: the network's last layer is linear, so its images are *not* clamped: they lie in about [-1, 1]
(the range the CelebA-HQ training images were scaled to) but may overshoot it slightly. Nothing here clamps;
GANLatentDiscovery clamps only when it converts to pictures (``(x + 1) / 2`` clamped to [0, 1]).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from latentnav.errors import ConfigError, DataFormatError
from latentnav.generators.base import FrozenGenerator, truncate_z

Z_DIM = 512
RESOLUTION = 1024
#: (in, out, kernel, upsample) of features.0 .. features.17, in order.
BLOCKS: tuple[tuple[int, int, int, bool], ...] = (
    (512, 512, 4, False), (512, 512, 3, False),                       # 4 px
    (512, 512, 3, True), (512, 512, 3, False),                        # 8 px
    (512, 512, 3, True), (512, 512, 3, False),                        # 16 px
    (512, 512, 3, True), (512, 512, 3, False),                        # 32 px
    (512, 256, 3, True), (256, 256, 3, False),                        # 64 px
    (256, 128, 3, True), (128, 128, 3, False),                        # 128 px
    (128, 64, 3, True), (64, 64, 3, False),                           # 256 px
    (64, 32, 3, True), (32, 32, 3, False),                            # 512 px
    (32, 16, 3, True), (16, 16, 3, False),                            # 1024 px
)
OUTPUT = (16, 3, 1)  # (in, out, kernel) of the to-RGB layer
PIXEL_NORM_EPS = 1e-8
LEAK = 0.2
#: Keys whose presence identifies the layout (see :func:`recognise_proggan`).
SIGNATURE_KEYS = ("features.0.conv.weight", "features.0.wscale.scale", "features.0.wscale.b",
                  "features.17.conv.weight", "output.conv.weight", "output.wscale.scale", "output.wscale.b")


def pixel_norm(x: torch.Tensor) -> torch.Tensor:
    """Each pixel's feature vector divided by its root mean square over channels (ProGAN's eq. in sec. 4.2)."""
    return x / torch.sqrt(x.square().mean(dim=1, keepdim=True) + PIXEL_NORM_EPS)


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour upsampling by 2 (each pixel becomes a 2x2 block)."""
    return F.interpolate(x, scale_factor=2, mode="nearest")


class ScaleBias(nn.Module):
    """``x * scale + b`` per channel: the stored equalised-learning-rate constant and the layer's bias
    (parameter names ``scale`` (1,) and ``b`` (C,), as in the file)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.b = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.b[None, :, None, None]


class ProgGANBlock(nn.Module):
    """pixel norm -> (nearest 2x upsampling) -> conv (no bias) -> scale and bias -> leaky ReLU 0.2."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, upsample: bool) -> None:
        super().__init__()
        self.upsample = upsample
        # kernel 4 on a 1x1 latent: padding 3 makes the 4x4 start; kernel 3: 'same' padding.
        self.padding = kernel - 1 if kernel == 4 else kernel // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, padding=self.padding, bias=False)
        self.wscale = ScaleBias(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pixel_norm(x)
        if self.upsample:
            x = upsample2x(x)
        return F.leaky_relu(self.wscale(self.conv(x)), LEAK)


class ProgGANOutput(nn.Module):
    """pixel norm -> 1x1 conv to RGB -> scale and bias (linear: no activation, no clamp)."""

    def __init__(self, in_channels: int, out_channels: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.wscale = ScaleBias(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.wscale(self.conv(pixel_norm(x)))


class ProgGANGenerator(nn.Module):
    """z (B, 512) or (B, 512, 1, 1) -> images (B, 3, 1024, 1024), the checkpoint's fixed layout."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(*(ProgGANBlock(*spec) for spec in BLOCKS))
        self.output = ProgGANOutput(*OUTPUT[:2])
        self.z_dim, self.resolution = Z_DIM, RESOLUTION

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim == 2:
            z = z[:, :, None, None]
        return self.output(self.features(z))

    def first_layer_matrix(self) -> torch.Tensor:
        """(512 * 16, 512): ``h = A @ pixel_norm(z)`` is features.0's output before its bias and activation,
        flattened in (channel, y, x) order. With padding 3 on a 1x1 input, output pixel (y, x) reads the
        kernel tap (3 - y, 3 - x) (a convolution layer correlates), so A is the kernel flipped in both spatial
        axes, laid out (out, y, x, in), times the layer's scale."""
        block = self.features[0]
        w = block.conv.weight.detach().flip(2, 3).permute(0, 2, 3, 1)  # (out, y, x, in)
        return (w.reshape(-1, w.shape[-1]) * block.wscale.scale.detach()).clone()


def layout() -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) of every tensor of the file, in the file's (state-dict) order; needs no network."""
    rows: list[tuple[str, tuple[int, ...]]] = []
    for i, (cin, cout, k, _) in enumerate(BLOCKS):
        rows += [(f"features.{i}.conv.weight", (cout, cin, k, k)), (f"features.{i}.wscale.scale", (1,)),
                 (f"features.{i}.wscale.b", (cout,))]
    cin, cout, k = OUTPUT
    return rows + [("output.conv.weight", (cout, cin, k, k)), ("output.wscale.scale", (1,)), ("output.wscale.b", (cout,))]


def seeded_state_dict(seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """Random weights in the real layout from one documented stream (golden tests, benchmarks).

    ``g = torch.Generator().manual_seed(seed)``; for each (key, shape) of :func:`layout`, in order,
    ``r = torch.randn(shape, generator=g)`` (float32) becomes:

    - ``*.conv.weight``: ``r`` (unit normal, as ProGAN initialises under its equalised learning rate);
    - ``*.wscale.scale``: ``gain / sqrt(fan_in) * (1 + 0.1 * r)``, fan_in = in * k * k of that layer's
      convolution, gain sqrt(2) (1 for the output layer): ProGAN's He constant, perturbed;
    - ``*.wscale.b``: ``0.1 * r``.

    Every layer is preceded by a pixel norm, so activations neither vanish nor explode (images ~ unit scale)."""
    g = torch.Generator().manual_seed(int(seed))
    fan_in: dict[str, int] = {}
    state: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for key, shape in layout():
        r = torch.randn(shape, generator=g, dtype=torch.float32)
        owner = key.rsplit(".", 2)[0]  # "features.3" / "output"
        if key.endswith("conv.weight"):
            fan_in[owner] = shape[1] * shape[2] * shape[3]
            state[key] = r
        elif key.endswith("wscale.scale"):
            gain = 1.0 if owner == "output" else math.sqrt(2.0)
            state[key] = (gain / math.sqrt(fan_in[owner])) * (1.0 + 0.1 * r)
        else:
            state[key] = 0.1 * r
    return state


class ProgGANAdapter(FrozenGenerator):
    """Voynov & Babenko's ProgGAN behind the contract: z (512,) ~ N(0, I) -> (3, 1024, 1024), unconditional.

    - Latent: z only, fed as (B, 512, 1, 1) exactly as GANLatentDiscovery does (no normalisation besides
      the network's own first pixel norm; shifts ``z + shift`` therefore act on the direction of z only).
    - Images: the network's linear output, about [-1, 1] and *not* clamped (see the module docstring).
    - Truncation: as the other z-only generators, psi pulls z towards ``truncation_latent`` (default 0). The
      original has no truncation, and because the first operation is a pixel norm, pulling towards 0 changes
      nothing for psi > 0 (psi = 0 gives the image of the zero latent); only a given ``truncation_latent``
      makes psi act. ``truncation_cutoff`` (rows of w+) does not apply to a single z and is ignored.
    - No noise inputs: every ``noise_mode`` gives the same images.
    """

    feature_layer = "net.features.0"  # GANSpace reads z-space activations here (the first layer on z)

    latent_spaces = ("z",)
    num_classes = 0

    def __init__(self, net: ProgGANGenerator, identity: Optional[dict] = None) -> None:
        super().__init__(net.resolution, net.z_dim, identity)
        self.net = net
        self.freeze()

    def _synthesize(self, latent, space, truncation, noise_mode, truncation_latent, classes=None,
                    truncation_cutoff=None):
        return self.net(truncate_z(latent, truncation, truncation_latent)[:, :, None, None])

    def latent_weights(self, space: str = "z", layers: Optional[Sequence[int]] = None):
        """``[("features.0", A)]``, A (8192, 512): the first layer's effective matrix including its scale
        (:meth:`ProgGANGenerator.first_layer_matrix`): features.0's pre-bias output, flattened as
        (channel, y, x), is ``A @ pixel_norm(z)``. The same matrix as SeFa's release uses for PGGAN (its
        first layer's weight flipped and flattened), up to the scale, which row normalisation removes."""
        self._check_space(space)
        if layers is not None and list(layers) not in ([], [0]):
            raise ConfigError(f"latent_weights: ProgGAN has one latent-facing layer (index 0), got {list(layers)}")
        return [("features.0", self.net.first_layer_matrix())]


def _state_of(blob) -> Optional[dict]:
    """The state dict in ``blob``: the blob itself (GANLatentDiscovery's file), or its ``state_dict``."""
    if isinstance(blob, dict) and isinstance(blob.get("state_dict"), dict):
        blob = blob["state_dict"]
    return blob if isinstance(blob, dict) else None


def recognise_proggan(blob) -> bool:
    """True for a state dict (or a dict with ``state_dict``) in this layout: tensors under the keys
    ``features.0.conv.weight`` ... ``features.17.conv.weight`` and ``output.wscale.{scale,b}``, with a
    (512, 512, 4, 4) first kernel. Rosinality (``g_ema``), genforce (``generator``) and BigGAN files have none
    of these keys at their top level."""
    state = _state_of(blob)
    if state is None or not all(isinstance(state.get(k), torch.Tensor) for k in SIGNATURE_KEYS):
        return False
    return tuple(state["features.0.conv.weight"].shape) == (BLOCKS[0][1], BLOCKS[0][0], 4, 4)


def load_proggan(blob, identity: Optional[dict] = None, map_location="cpu", **options) -> ProgGANAdapter:
    """The :class:`ProgGANAdapter` of ``blob``: the loaded file (a plain state dict, as GANLatentDiscovery's
    ``100_celeb_hq_network-snapshot-010403.pth``, or a dict with ``state_dict``), loaded strictly.

    ``options``: ``resolution`` / ``z_dim``, when given, must be 1024 / 512 (one line otherwise); the other
    load options (``w_avg_samples``, ...) do not apply to this network and are ignored."""
    source = str((identity or {}).get("source", "ProgGAN state dict"))
    for name, fixed in (("resolution", RESOLUTION), ("z_dim", Z_DIM)):
        if options.get(name) is not None and int(options[name]) != fixed:
            raise ConfigError(f"generator {name}: the ProgGAN layout is fixed at {fixed}, got {options[name]}")
    state = _state_of(blob)
    if state is None or not recognise_proggan(state):
        raise DataFormatError(f"{source}: not a ProgGAN state dict (expected keys features.0.conv.weight ... "
                              "output.wscale.b, a (512, 512, 4, 4) first kernel)")
    net = ProgGANGenerator()
    own = net.state_dict()
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state]
    if unexpected or missing:
        raise DataFormatError(f"{source}: ProgGAN state dict does not fit the fixed 1024 px layout; unexpected keys: "
                              f"{', '.join(map(str, unexpected[:3])) or 'none'}; missing keys: "
                              f"{', '.join(missing[:3]) or 'none'}")
    wrong = [k for k, v in state.items() if tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        k = wrong[0]
        raise DataFormatError(f"{source}: ProgGAN key {k} has shape {tuple(state[k].shape)}, expected "
                              f"{tuple(own[k].shape)} (only the fixed 1024 px CelebA-HQ layout is supported)")
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return ProgGANAdapter(net.to(map_location), dict(identity or {}, format="voynov-proggan"))

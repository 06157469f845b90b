"""FrozenGenerator adapters: the demo DCGAN, StyleGAN2 of the rosinality port, any z -> image module."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from latentnav.generators.base import FrozenGenerator, linear_weight_as_matrix, truncate_z
from latentnav.generators.dcgan import DCGANGenerator
from latentnav.generators.stylegan2 import StyleGAN2Generator
from latentnav.errors import ConfigError




class DCGANAdapter(FrozenGenerator):
    """The bundled demo generator: z (64,) ~ N(0, I) -> 32 px faces. Truncation scales z."""

    latent_spaces = ("z",)

    def __init__(self, net: DCGANGenerator, identity: Optional[dict] = None) -> None:
        super().__init__(net.resolution, net.z_dim, identity)
        self.net = net
        self.freeze()

    def _synthesize(self, latent, space, truncation, noise_mode, truncation_latent, classes=None,
                    truncation_cutoff=None):
        return self.net(truncate_z(latent, truncation, truncation_latent))

    def latent_weights(self, space: str = "z", layers: Optional[Sequence[int]] = None):
        self._check_space(space)
        return [("fc", linear_weight_as_matrix(self.net.fc))]


class StyleGAN2Adapter(FrozenGenerator):
    """StyleGAN2 with ``z``, ``w``, ``w+`` and style-space ``s`` latents, truncation around the mean w, and
    noise modes.

    ``s`` (Wu et al. 2021's StyleSpace): every layer's style s_l = affine_l(w_l) (the modulation each convolution
    and to-RGB layer applies to its row of w+), concatenated in synthesis order (:meth:`style_space_layout`) into
    one vector of ``sum(in_channels)`` entries; an S direction moves one or more channels. Truncation in S pulls
    towards the styles of the mean w (exactly truncating w+ first: the affines are linear).

    ``w_avg``: the checkpoint's ``latent_avg`` when present, else the mean of
    ``mapping(z)`` over ``w_avg_samples`` seeded samples.
    """

    latent_spaces = ("z", "w", "w+", "s")

    def __init__(self, net: StyleGAN2Generator, w_avg: Optional[torch.Tensor] = None, w_avg_samples: int = 10000,
                 identity: Optional[dict] = None) -> None:
        super().__init__(net.config.size, net.config.style_dim, identity)
        self.net = net
        if w_avg is None:
            with torch.no_grad():
                z = torch.randn(w_avg_samples, self.z_dim, generator=torch.Generator().manual_seed(0))
                z = z.to(next(net.parameters()).device)
                w_avg = torch.cat([net.mapping(chunk) for chunk in z.split(1000)]).mean(0)
            self.identity["w_avg"] = f"estimated from {w_avg_samples} samples"
        else:
            self.identity.setdefault("w_avg", "latent_avg from the checkpoint")
        self.mapping_layers = net.config.n_mlp
        self.register_buffer("w_avg", w_avg.reshape(self.z_dim).float().clone())
        self.n_latent = net.config.n_latent
        layers = net.style_layers()
        self.style_sizes = [conv.in_ch for _, conv, _ in layers]
        # the w+ row behind every S channel: truncation_cutoff in S cuts where it cuts in w+
        self.register_buffer("style_rows", torch.cat([torch.full((conv.in_ch,), row) for _, conv, row in layers]),
                             persistent=False)
        self.freeze()

    def latent_shape(self, space: str = "z") -> tuple[int, ...]:
        self._check_space(space)
        if space == "s":
            return (sum(self.style_sizes),)
        return (self.n_latent, self.z_dim) if space == "w+" else (self.z_dim,)

    def style_space_layout(self) -> list[tuple[str, int, int]]:
        """(layer name, first S index, one past the last) of every layer's style, in synthesis order (conv1,
        to_rgb1, convs.0, convs.1, to_rgbs.0, ...): S channel c of layer L is index ``start_L + c``."""
        layout, start = [], 0
        for (name, _, _), size in zip(self.net.style_layers(), self.style_sizes):
            layout.append((name, start, start + size))
            start += size
        return layout

    def to_space(self, z: torch.Tensor, space: str, classes=None) -> torch.Tensor:
        self.check_latent(z, "z")
        self.check_classes(classes, z.shape[0])
        if space == "z":
            return z
        w = self.net.mapping(z)
        if space == "w":
            return w
        wplus = w.unsqueeze(1).repeat(1, self.n_latent, 1)
        return torch.cat(self.net.styles(wplus), dim=1) if space == "s" else wplus

    def truncated_styles(self, latent: torch.Tensor, truncation: float = 1.0,
                         truncation_latent: Optional[torch.Tensor] = None,
                         truncation_cutoff: Optional[int] = None) -> list[torch.Tensor]:
        """S latents (B, sum of channels) -> the per-layer styles the synthesis receives, pulled towards the styles
        of ``truncation_latent`` (a w, (d,) or (n_latent, d); default the mean w) by psi < 1, on the layers
        reading the first ``truncation_cutoff`` rows of w+ only when given."""
        self.check_latent(latent, "s")
        latent = latent.to(self.device)
        if truncation < 1.0:
            centre = self.w_avg if truncation_latent is None else truncation_latent.to(latent)
            centre = centre.expand(self.n_latent, self.z_dim) if centre.ndim == 1 else centre
            centre = torch.cat(self.net.styles(centre[None]), dim=1)
            pulled = centre + truncation * (latent - centre)
            latent = pulled if truncation_cutoff is None else torch.where(self.style_rows < truncation_cutoff, pulled, latent)
        return list(latent.split(self.style_sizes, dim=1))

    def truncated(self, latent: torch.Tensor, space: str = "z", truncation: float = 1.0,
                  truncation_latent: Optional[torch.Tensor] = None, truncation_cutoff: Optional[int] = None) -> torch.Tensor:
        """The w+ (B, n_latent, d) the synthesis network receives: ``space`` latents mapped and broadcast,
        then pulled towards ``truncation_latent`` ((d,) or (n_latent, d); default the mean w) by psi
        (the port's ``truncation_latent + psi * (w - truncation_latent)``, applied when psi < 1), on the first
        ``truncation_cutoff`` rows only when given."""
        self.check_latent(latent, space)
        latent = latent.to(self.device)
        if space == "z":
            latent = self.net.mapping(latent)
        if latent.ndim == 2:
            latent = latent.unsqueeze(1).repeat(1, self.n_latent, 1)
        if truncation < 1.0:
            centre = self.w_avg if truncation_latent is None else truncation_latent.to(latent)
            pulled = centre + truncation * (latent - centre)
            if truncation_cutoff is None:
                latent = pulled
            else:
                rows = torch.arange(self.n_latent, device=latent.device)[None, :, None] < truncation_cutoff
                latent = torch.where(rows, pulled, latent)
        return latent

    def _synthesize(self, latent, space, truncation, noise_mode, truncation_latent, classes=None,
                    truncation_cutoff=None):
        if noise_mode == "const":
            noise = self.net.stored_noise()
        elif noise_mode == "none":
            noise = [torch.zeros_like(n) for n in self.net.stored_noise()]
        else:
            noise = [None] * self.net.config.num_layers
        if space == "s":
            return self.net.synthesis_from_styles(self.truncated_styles(latent, truncation, truncation_latent,
                                                                        truncation_cutoff), noise)
        latent = self.truncated(latent, space, truncation, truncation_latent, truncation_cutoff)
        return self.net.synthesis(latent, noise)

    def noise_maps(self) -> list[torch.Tensor]:
        return list(self.net.stored_noise())

    def synthesize_with_noise(self, latent: torch.Tensor, space: str, noise: Sequence[torch.Tensor],
                              classes=None) -> torch.Tensor:
        self.check_latent(latent, space)
        self.check_classes(classes, latent.shape[0])
        if len(noise) != self.net.config.num_layers:
            raise ConfigError(f"noise: expected {self.net.config.num_layers} maps, got {len(noise)}")
        noise = [n.to(self.device) for n in noise]
        if space == "s":
            return self.net.synthesis_from_styles(self.truncated_styles(latent), noise)
        return self.net.synthesis(self.truncated(latent.to(self.device), space, 1.0, None), noise)

    def latent_weights(self, space: str = "w", layers: Optional[Sequence[int]] = None):
        """``z``: the mapping's first layer. ``w``/``w+``: every style modulation (out = channels),
        listed as conv1, to_rgb1, convs.0, convs.1, ..., to_rgbs.0, ... (the w+ row each reads:
        conv1 0, to_rgb1 1, convs.j j + 1, to_rgbs.j 2j + 3); ``layers`` picks indices of that list.
        ``s`` has none: its channels enter the convolutions multiplicatively, not through a matrix."""
        self._check_space(space)
        if space == "s":
            raise ConfigError("latent weights: style space s has no latent-facing matrix (its channels scale the "
                              "convolutions' inputs); SeFa and GANSpace's layer work in z, w or w+")
        if space == "z":
            return [("style.1", self.net.style[1].effective_weight().detach().clone())]
        mods = self.net.modulation_layers()
        chosen = range(len(mods)) if layers is None else layers
        try:
            return [(mods[i][0], mods[i][1].effective_weight().detach().clone()) for i in chosen]
        except IndexError:
            raise ConfigError(f"latent_weights: layer indices must be in 0..{len(mods) - 1}, got {list(chosen)}") from None


def _weight_layer(module: nn.Module) -> Optional[nn.Module]:
    """The first Linear / ConvTranspose2d / Conv2d (scripted or not) holding a weight."""
    for m in module.modules():
        kind = getattr(m, "original_name", type(m).__name__)
        if kind in ("Linear", "ConvTranspose2d", "Conv2d") and hasattr(m, "weight"):
            return m
    return None


class ModuleAdapter(FrozenGenerator):
    """Any module mapping z (B, d) or (B, d, 1, 1) ~ N(0, I) to images (B, 3, R, R) in [-1, 1].

    The latent size and resolution are given, or found by a probe call: candidate sizes
    come from the first weight's shape, and the first that yields an image wins.
    """

    latent_spaces = ("z",)

    def __init__(self, module: nn.Module, z_dim: Optional[int] = None, resolution: Optional[int] = None,
                 identity: Optional[dict] = None, name: str = "generator") -> None:
        for p in module.parameters():
            p.requires_grad_(False)
        module.eval()
        z_dim, resolution, z_as_map = self._probe(module, z_dim, resolution, name)
        super().__init__(resolution, z_dim, identity)
        self.module = module
        self.z_as_map = z_as_map
        self.freeze()

    @staticmethod
    def _probe(module: nn.Module, z_dim: Optional[int], resolution: Optional[int], name: str):
        if z_dim is not None:
            candidates = [z_dim]
        else:
            layer = _weight_layer(module)
            candidates = sorted(set(layer.weight.shape[:2])) if layer is not None else []
            if not candidates:
                raise ConfigError(f"{name}: cannot guess the latent size; give z_dim")
        for d in candidates:
            for as_map in (False, True):
                # On the module's own device: a generator loaded with map_location=cuda fails a CPU probe.
                z = torch.zeros((1, d, 1, 1) if as_map else (1, d), device=_module_device(module))
                try:
                    with torch.no_grad():
                        out = module(z)
                except Exception:  # a wrong guess fails somewhere inside the module
                    continue
                if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[1] == 3 and out.shape[2] == out.shape[3]:
                    if resolution is not None and out.shape[-1] != resolution:
                        raise ConfigError(f"{name}: resolution is {out.shape[-1]}, config says {resolution}")
                    return d, int(out.shape[-1]), as_map
        tried = ", ".join(str(d) for d in candidates)
        raise ConfigError(f"{name}: no latent size among {tried} gives a (1, 3, R, R) image; give z_dim")

    def _synthesize(self, latent, space, truncation, noise_mode, truncation_latent, classes=None,
                    truncation_cutoff=None):
        z = truncate_z(latent, truncation, truncation_latent)
        return self.module(z[:, :, None, None] if self.z_as_map else z)

    def latent_weights(self, space: str = "z", layers: Optional[Sequence[int]] = None):
        self._check_space(space)
        layer = _weight_layer(self.module)
        if layer is None:
            raise ConfigError("latent_weights: the module has no Linear/ConvTranspose2d/Conv2d layer")
        return [("first_layer", linear_weight_as_matrix(layer))]


def _module_device(module: nn.Module) -> torch.device:
    for t in list(module.parameters()) + list(module.buffers()):
        return t.device
    return torch.device("cpu")

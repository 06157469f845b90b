"""NVIDIA StyleGAN3 generators (configs T and R) behind the :class:`FrozenGenerator` contract.

    from latentnav.nvidia_pickle import read_network_pickle
    from latentnav.generators.stylegan3 import load_stylegan3
    G = load_stylegan3(read_network_pickle("stylegan3-t-ffhq-1024x1024.pkl"), identity={"path": ...})
    w = G.sample(4, seed=0, space="w")
    images = G.synthesize(w, "w", truncation=0.7, truncation_cutoff=8)

The network is our own port (:mod:`latentnav.generators.stylegan3_layers`), built from the pickled
``init_kwargs`` and loaded strictly from the pickled state. Nothing of the pickle's embedded code runs.
StyleGAN3 has no noise inputs: ``noise_mode`` is accepted and has no effect.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from latentnav.errors import ConfigError, DataFormatError
from latentnav.generators.base import FrozenGenerator
from latentnav.generators.stylegan3_layers import StyleGAN3Network
from latentnav.nvidia_pickle import generator_record

# init_kwargs of the original's Generator, by where they go (the synthesis network forwards unknown ones to its layers)
_TOP = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
_MAPPING = ("num_layers", "lr_multiplier", "w_avg_beta")
_SCHEDULE = ("channel_base", "channel_max", "num_layers", "num_critical", "first_cutoff", "first_stopband",
             "last_stopband_rel", "margin_size", "conv_kernel", "filter_size", "lrelu_upsampling", "use_radial_filters")
_TRAINING_ONLY = ("num_fp16_res", "magnitude_ema_beta")  # precision and running-average rates: no effect in fp32 eval
_SIGNATURE_KEYS = ("synthesis.input.freqs", "synthesis.input.transform", "mapping.w_avg")


def build_stylegan3(init_kwargs: Mapping[str, Any]) -> StyleGAN3Network:
    """An (unloaded) network for the ``init_kwargs`` a StyleGAN3 ``Generator`` was pickled with; unknown or
    missing arguments are one :class:`DataFormatError` line."""
    kwargs = dict(init_kwargs)
    missing = [k for k in _TOP if k not in kwargs and k != "c_dim"]
    if missing:
        raise DataFormatError(f"StyleGAN3 init_kwargs: missing {', '.join(missing)}")
    top = {k: kwargs.pop(k) for k in _TOP if k in kwargs}
    top.setdefault("c_dim", 0)
    mapping = dict(kwargs.pop("mapping_kwargs", None) or {})
    bad = sorted(set(mapping) - set(_MAPPING))
    if bad:
        raise DataFormatError(f"StyleGAN3 init_kwargs: unknown mapping_kwargs {', '.join(bad)}")
    schedule = {k: kwargs.pop(k) for k in _SCHEDULE if k in kwargs}
    conv_clamp = kwargs.pop("conv_clamp", 256)
    output_scale = kwargs.pop("output_scale", 0.25)
    for k in _TRAINING_ONLY:
        kwargs.pop(k, None)
    if kwargs:
        raise DataFormatError(f"StyleGAN3 init_kwargs: unknown argument(s) {', '.join(sorted(kwargs))}")
    try:
        return StyleGAN3Network(**{k: int(v) for k, v in top.items()}, mapping=mapping, schedule=schedule,
                                conv_clamp=None if conv_clamp is None else float(conv_clamp),
                                output_scale=float(output_scale))
    except (ValueError, TypeError, ZeroDivisionError) as exc:
        raise DataFormatError(f"StyleGAN3 init_kwargs: not a valid network ({exc})") from None


def recognise_stylegan3(blob: Any) -> bool:
    """True for a StyleGAN3 generator record (or a dict of records holding one as ``G_ema``/``G``): an object
    with ``init_kwargs`` and ``state_dict()``, whose ``version`` is ``"stylegan3"`` or, for an unrecognised source
    (version None), whose state has the Fourier input and the mapping's ``w_avg``."""
    try:
        record = generator_record(blob)
    except DataFormatError:
        return False
    if not hasattr(record, "init_kwargs") or not callable(getattr(record, "state_dict", None)):
        return False
    if getattr(record, "class_name", "Generator") != "Generator":
        return False
    version = getattr(record, "version", None)
    if version is not None:  # a recognised (or user-named) source decides
        return version == "stylegan3"
    keys = set(record.state_dict())
    return all(k in keys for k in _SIGNATURE_KEYS)


def load_stylegan3(blob: Any, identity: Optional[dict] = None, map_location="cpu") -> "StyleGAN3Adapter":
    """The adapter for a StyleGAN3 generator record (a ``PersistentObject`` of
    :func:`latentnav.nvidia_pickle.read_network_pickle`, or its dict of records: ``G_ema`` is taken), built from
    its ``init_kwargs`` and loaded strictly from its ``state_dict()``, on ``map_location``."""
    record = generator_record(blob)
    net = build_stylegan3(record.init_kwargs)
    state = {k: torch.as_tensor(v) for k, v in record.state_dict().items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise DataFormatError(f"StyleGAN3 state does not fit its init_kwargs: {detail[:300]}") from None
    net = net.to(map_location).eval()
    identity = dict(identity or {})
    identity.setdefault("format", "nvidia-stylegan3")
    identity.setdefault("config", "R" if record.init_kwargs.get("use_radial_filters") else "T")
    return StyleGAN3Adapter(net, identity=identity)


class StyleGAN3Adapter(FrozenGenerator):
    """StyleGAN3 with ``z``, ``w`` and ``w+`` (``num_ws`` rows: the Fourier input, then every layer) latents,
    truncation around the mapping's ``w_avg`` with NVIDIA's cutoff, and classes when ``c_dim`` > 0."""

    latent_spaces = ("z", "w", "w+")
    truncation_source = "the mapping's w_avg (stored in the pickle)"

    def __init__(self, net: StyleGAN3Network, identity: Optional[dict] = None) -> None:
        super().__init__(net.img_resolution, net.z_dim, identity, num_classes=net.c_dim)
        if net.img_channels != 3:
            raise DataFormatError(f"StyleGAN3: {net.img_channels} image channels; latentnav works on RGB (3)")
        self.net = net
        self.w_dim = net.w_dim
        self.num_ws = net.num_ws
        self.mapping_layers = net.mapping.num_layers
        self.freeze()

    def describe(self) -> dict:
        info = super().describe()
        info["config"] = self.identity.get("config")
        return info

    @property
    def w_avg(self) -> torch.Tensor:
        return self.net.mapping.w_avg

    def latent_shape(self, space: str = "z") -> tuple[int, ...]:
        self._check_space(space)
        return {"z": (self.z_dim,), "w": (self.w_dim,), "w+": (self.num_ws, self.w_dim)}[space]

    def _labels(self, classes: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        return None if classes is None else F.one_hot(classes, self.num_classes).float()

    def to_space(self, z: torch.Tensor, space: str, classes=None) -> torch.Tensor:
        self.check_latent(z, "z")
        classes = self.check_classes(classes, z.shape[0])
        if space == "z":
            return z
        self._check_space(space)
        w = self.net.mapping(z.to(self.device), self._labels(classes))
        return w if space == "w" else w.unsqueeze(1).repeat(1, self.num_ws, 1)

    def truncated(self, latent: torch.Tensor, space: str = "z", truncation: float = 1.0,
                  truncation_latent: Optional[torch.Tensor] = None, truncation_cutoff: Optional[int] = None,
                  classes: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The w+ (B, num_ws, w_dim) the synthesis network receives: ``space`` latents mapped (with their classes)
        and broadcast, then the first ``truncation_cutoff`` rows (all when None) moved to
        ``lerp(centre, w, psi)``, centre = ``truncation_latent`` ((w_dim,) or (num_ws, w_dim)) or ``w_avg``."""
        latent = latent.to(self.device)
        if space == "z":
            classes = self.check_classes(classes, latent.shape[0])
            latent = self.net.mapping(latent, self._labels(classes))
        if latent.ndim == 2:
            latent = latent.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation != 1.0:
            centre = self.w_avg if truncation_latent is None else truncation_latent.to(latent)
            k = self.num_ws if truncation_cutoff is None else min(int(truncation_cutoff), self.num_ws)
            if centre.ndim == 2:
                centre = centre[:k]
            pulled = torch.lerp(centre.expand_as(latent[:, :k]), latent[:, :k], truncation)
            latent = torch.cat([pulled, latent[:, k:]], dim=1)
        return latent

    def _synthesize(self, latent, space, truncation, noise_mode, truncation_latent, classes=None,
                    truncation_cutoff=None):
        return self.net.synthesis(self.truncated(latent, space, truncation, truncation_latent, truncation_cutoff, classes))

    def set_transform(self, matrix: Optional[torch.Tensor] = None) -> "StyleGAN3Adapter":
        """Set the input's (3, 3) user transform (the inverse of the wanted rotation/translation of the image,
        in the input's coordinates); None restores the identity (NVIDIA's default)."""
        matrix = torch.eye(3) if matrix is None else torch.as_tensor(matrix, dtype=torch.float32)
        if tuple(matrix.shape) != (3, 3) or not bool(torch.isfinite(matrix).all()):
            raise ConfigError(f"transform: expected a finite 3 x 3 matrix, got shape {tuple(matrix.shape)}")
        self.net.synthesis.input.transform.copy_(matrix)
        return self

    def style_layers(self) -> list[tuple[str, nn.Module]]:
        """The affines reading w, in w+ row order: ``input`` (row 0), then ``L{i}_{size}_{channels}`` (row i + 1)."""
        synthesis = self.net.synthesis
        return [("input", synthesis.input.affine)] + [(n, getattr(synthesis, n).affine) for n in synthesis.layer_names]

    def latent_weights(self, space: str = "w", layers: Optional[Sequence[int]] = None):
        """``z``: the mapping's first dense layer on the (RMS-normalised) z, as ``mapping.fc0`` (its z columns when
        conditional). ``w``/``w+``: every style affine, effective weight (stored weight times its run-time gain),
        named and ordered as :meth:`style_layers`; ``layers`` picks indices of that list."""
        self._check_space(space)
        if space == "z":
            return [("mapping.fc0", self.net.mapping.fc0.effective_weight()[:, : self.z_dim].detach().clone())]
        affines = self.style_layers()
        chosen = list(range(len(affines)) if layers is None else layers)
        if not all(isinstance(i, int) and 0 <= i < len(affines) for i in chosen):
            raise ConfigError(f"latent_weights: layer indices must be in 0..{len(affines) - 1}, got {chosen}")
        return [(affines[i][0], affines[i][1].effective_weight().detach().clone()) for i in chosen]

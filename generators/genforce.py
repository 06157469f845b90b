"""genforce's checkpoints (PGGAN, StyleGAN, StyleGAN2) behind the :class:`FrozenGenerator` contract.

The format: a ``.pth`` dict saved by ``torch.save`` holding the generator's state dict under
``generator`` and, in every checkpoint genforce converted or trained, the moving average of its
weights under ``generator_smooth`` (that one is used when present, as SeFa's ``load_generator`` does;
``weights="generator"`` picks the other). genforce's training checkpoints nest them under ``models``.
The files carry no build arguments: :mod:`~latentnav.generators.genforce_pggan` and
:mod:`~latentnav.generators.genforce_stylegan` infer the configuration from the tensors, and the few
things that are not in them are load options with genforce's defaults.

genforce (``models/*_generator.py``) and the SeFa release name and shape every tensor alike (SeFa's copy
only lacks genforce's optional channel-wise noise), so one reader serves both model zoos; genforce's
StyleGAN2-ADA generator shares StyleGAN2's layout too (its conditional embedding is a dense layer).
InterFaceGAN's own ``pggan_celebahq.pth`` / ``stylegan_*.pth`` are another layout: plain state dicts of
its older model classes (``layer0.conv.weight``, ``synthesis.layer0.epilogue...``) holding the same
networks (converted from the same official TensorFlow pickles as genforce's zoo); they are recognised
too and translated to genforce's names (:mod:`~latentnav.generators.genforce_interfacegan`).

Load options (``load_genforce(blob, identity, **options)``):

- ``weights``: ``"generator_smooth"`` (default when present) or ``"generator"``;
- ``normalize_latent``: InterFaceGAN's preprocessing of z, which its PGGAN and StyleGAN boundaries were
  trained on: latents drawn from the prior (``sample``, ``latents_at``) are put on the sphere of radius
  sqrt(d). Default True for PGGAN (InterFaceGAN's ``preprocess``; SeFa likewise edits PGGAN's pixel-
  normalised z) and for InterFaceGAN's own StyleGAN files, False for genforce's StyleGAN / StyleGAN2
  (genforce and SeFa sample plain N(0, I); give True to match InterFaceGAN's z-space boundaries). It
  never changes an image: both networks normalise z (pixel norm) before using it; it changes where the
  latents sit, so distances along a direction mean what they meant for InterFaceGAN;
- ``truncation_cutoff``: the default number of w+ rows psi applies to when a call gives none (None: all
  rows, the contract's default; 8 is InterFaceGAN's and SeFa's setting for StyleGAN);
- ``label_size`` (PGGAN only: the first layer's input is z and the labels together, so the file cannot
  tell them apart; StyleGAN's embedding carries its size), ``fused_scale`` (PGGAN: inferred from the
  weight layout when the channels differ, else False; StyleGAN v1: ``"auto"``, fused from 128 px;
  InterFaceGAN's files store fused layers apart, so they tell),
  ``mapping_lr_mul`` (0.01), ``use_wscale`` (True), ``final_tanh`` (False), ``demodulate`` (True),
  ``lod`` (level of detail; default the file's ``lod`` buffer, 0 in published checkpoints);
- ``modconv`` (StyleGAN2 only): ``auto`` (default), ``fused`` (genforce's own form) or ``nonfused``, as for a
  rosinality checkpoint.

SeFa's layer choice (``sefa.py`` / ``utils.factorize_weight`` of the release, genforce's ``all``) is the
default of :meth:`latent_weights`: PGGAN's first layer (its 4x4 convolution of z, flipped to a matrix);
StyleGAN's style affines of every layer; StyleGAN2's style affines of the convolutions ``layer0`` ..
``layer{n-2}`` and, for the last w+ row, which no convolution reads, the last to-RGB layer's affine.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from latentnav.errors import ConfigError, DataFormatError
from latentnav.generators.base import FrozenGenerator
from latentnav.generators.genforce_interfacegan import as_tensors, interfacegan_family, interfacegan_to_genforce
from latentnav.generators.genforce_pggan import GenforcePGGAN, infer_pggan_config, is_pggan_state
from latentnav.generators.genforce_stylegan import GenforceStyleGAN, infer_stylegan_config, is_stylegan_state
from latentnav.safe_load import strict_load_state_dict

FAMILIES = ("pggan", "stylegan", "stylegan2")
WEIGHT_KEYS = ("generator_smooth", "generator")
OPTIONS = ("family", "weights", "normalize_latent", "truncation_cutoff", "label_size", "fused_scale", "modconv",
           "mapping_lr_mul", "use_wscale", "final_tanh", "demodulate", "lod")


def on_sphere(z: torch.Tensor) -> torch.Tensor:
    """InterFaceGAN's latent preprocessing: each row scaled to norm sqrt(d)."""
    return z / z.norm(dim=1, keepdim=True) * float(np.sqrt(z.shape[1]))


class _GenforceAdapter(FrozenGenerator):
    """What the three families share: the prior (optionally on the sphere) and labels from class ids."""

    family = ""

    def __init__(self, net, resolution: int, z_dim: int, label_size: int, identity: Optional[dict],
                 normalize_latent: bool) -> None:
        super().__init__(resolution, z_dim, identity, num_classes=label_size)
        self.net = net
        self.normalize_latent = bool(normalize_latent)

    def _labels(self, classes: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        if not self.num_classes:
            return None
        return F.one_hot(classes.to(self.device, torch.int64), self.num_classes).float()

    def _prior(self, z: torch.Tensor) -> torch.Tensor:
        return on_sphere(z) if self.normalize_latent else z

    def sample(self, n: int, seed: Optional[int] = None, space: str = "z",
               generator: Optional[torch.Generator] = None, classes=None) -> torch.Tensor:
        """As :meth:`FrozenGenerator.sample`, z put on the sphere when ``normalize_latent``."""
        self._check_space(space)
        z = self._prior(super().sample(n, seed=seed, space="z", generator=generator))
        return z if space == "z" else self.to_space(z, space, classes=classes)

    def latents_at(self, indices, seed: int = 0, space: str = "z") -> torch.Tensor:
        """As :meth:`FrozenGenerator.latents_at`, z put on the sphere when ``normalize_latent``."""
        self._check_space(space)
        z = self._prior(super().latents_at(indices, seed, "z"))
        if space == "z":
            return z
        with torch.autocast(z.device.type, enabled=False):
            return self.to_space(z, space, classes=self.classes_at(indices)).float()

    def describe(self) -> dict:
        """The contract's facts (:meth:`FrozenGenerator.describe`) and genforce's: the state dict used, the
        latent preprocessing, and how the settings that are not in the file were chosen."""
        return dict(super().describe(), weights=self.identity.get("state_dict"),
                    normalize_latent=self.normalize_latent, inferred=dict(self.net.config.notes))


class GenforcePGGANAdapter(_GenforceAdapter):
    """genforce PGGAN: z (z_dim,) only. Its first operation normalises z per sample (pixel norm), so
    truncation towards the prior's mean (0) would change nothing; psi < 1 needs a ``truncation_latent``."""

    feature_layer = "net.layer0"  # GANSpace reads z-space activations here (the first layer on z)

    latent_spaces = ("z",)
    family = "pggan"
    mapping_layers = 0
    truncation_source = "none: z is pixel-normalised, so psi < 1 needs a truncation_latent"

    def __init__(self, net: GenforcePGGAN, identity: Optional[dict] = None, normalize_latent: bool = True) -> None:
        c = net.config
        super().__init__(net, c.resolution, c.z_dim, c.label_size, identity, normalize_latent)
        self.freeze()

    def _synthesize(self, latent, space, truncation, noise_mode, truncation_latent, classes=None,
                    truncation_cutoff=None):
        if truncation < 1.0:
            if truncation_latent is None:
                raise ConfigError("truncation: genforce PGGAN normalises z first, so psi < 1 towards 0 changes "
                                  "nothing; give a truncation_latent or leave truncation at 1")
            latent = truncation_latent + truncation * (latent - truncation_latent)
        return self.net(latent, self._labels(classes))

    def latent_weights(self, space: str = "z", layers: Optional[Sequence[int]] = None):
        """SeFa's choice for PGGAN (the release forces it): ``layer0``, the first layer as a
        (C4 * 16, z_dim) matrix acting on the pixel-normalised z."""
        self._check_space(space)
        if layers is not None and [int(i) for i in layers] != [0]:
            raise ConfigError(f"latent_weights: genforce PGGAN has one latent-facing layer (0), got {list(layers)}")
        return [("layer0", self.net.first_layer_matrix())]



class GenforceStyleGANAdapter(_GenforceAdapter):
    """genforce StyleGAN (v1) / StyleGAN2: ``z``, ``w`` and ``w+`` latents (no ``w`` when the mapping gives
    one w per layer), truncation around the file's mean w (``truncation.w_avg``), noise modes ``const``
    (the file's stored maps), ``random`` (fresh per sample; genforce's ``randomize_noise``) and ``none``."""

    def __init__(self, net: GenforceStyleGAN, identity: Optional[dict] = None, normalize_latent: bool = False,
                 truncation_cutoff: Optional[int] = None) -> None:
        c = net.config
        super().__init__(net, c.resolution, c.z_dim, c.label_size, identity, normalize_latent)
        self.family = "stylegan" if c.version == 1 else "stylegan2"
        self.latent_spaces = ("z", "w", "w+") if c.repeat_w else ("z", "w+")
        self.n_latent = c.num_layers
        self.w_dim = c.w_dim
        self.mapping_layers = c.mapping_layers
        if truncation_cutoff is not None and (isinstance(truncation_cutoff, bool) or int(truncation_cutoff) < 0):
            raise ConfigError(f"truncation_cutoff: expected a non-negative number of w+ rows, got {truncation_cutoff}")
        self.default_cutoff = None if truncation_cutoff is None else int(truncation_cutoff)
        self.freeze()

    def latent_shape(self, space: str = "z") -> tuple[int, ...]:
        self._check_space(space)
        return {"z": (self.z_dim,), "w": (self.w_dim,), "w+": (self.n_latent, self.w_dim)}[space]

    def to_space(self, z: torch.Tensor, space: str, classes=None) -> torch.Tensor:
        self.check_latent(z, "z")
        classes = self.check_classes(classes, z.shape[0])
        self._check_space(space)
        if space == "z":
            return z
        w = self.net.mapping(z.to(self.device), self._labels(classes))
        return w if space == "w" else self.net.to_wp(w)

    def truncated(self, latent: torch.Tensor, space: str = "z", truncation: float = 1.0,
                  truncation_latent: Optional[torch.Tensor] = None, truncation_cutoff: Optional[int] = None,
                  classes=None) -> torch.Tensor:
        """The w+ (B, n_latent, w_dim) the synthesis network receives: ``space`` latents mapped and
        broadcast, then, for psi < 1, genforce's ``centre + (w - centre) * psi`` on the first
        ``truncation_cutoff`` rows (None: the load option's default, else all rows); centre: the file's
        mean w unless a ``truncation_latent`` ((w_dim,) or (n_latent, w_dim)) is given."""
        latent = latent.to(self.device)
        if space == "z":
            latent = self.net.mapping(latent, self._labels(classes))
        wp = self.net.to_wp(latent)
        cutoff = self.default_cutoff if truncation_cutoff is None else truncation_cutoff
        if truncation < 1.0 and (cutoff is None or cutoff > 0):
            centre = self.net.w_avg() if truncation_latent is None else truncation_latent.to(wp)
            centre = centre.reshape(1, -1, self.w_dim)
            coef = torch.ones(self.n_latent, device=wp.device, dtype=wp.dtype)
            coef[: self.n_latent if cutoff is None else cutoff] = float(truncation)
            wp = centre + (wp - centre) * coef.view(1, -1, 1)
        return wp

    def _noise(self, mode: str) -> list[Optional[torch.Tensor]]:
        stored = self.net.stored_noise()
        if mode == "const":
            return list(stored)
        if mode == "none":
            return [torch.zeros_like(n) for n in stored]
        return [None] * len(stored)

    def _synthesize(self, latent, space, truncation, noise_mode, truncation_latent, classes=None,
                    truncation_cutoff=None):
        wp = self.truncated(latent, space, truncation, truncation_latent, truncation_cutoff, classes)
        return self.net.synthesis(wp, self._noise(noise_mode))

    def noise_maps(self) -> list[torch.Tensor]:
        return list(self.net.stored_noise())

    def synthesize_with_noise(self, latent: torch.Tensor, space: str, noise: Sequence[torch.Tensor],
                              classes=None) -> torch.Tensor:
        self.check_latent(latent, space)
        classes = self.check_classes(classes, latent.shape[0])
        stored = self.net.stored_noise()
        if len(noise) != len(stored):
            raise ConfigError(f"noise: expected {len(stored)} maps, got {len(noise)}")
        for i, (n, s) in enumerate(zip(noise, stored)):
            if tuple(n.shape[1:]) != tuple(s.shape[1:]) or n.shape[0] not in (1, latent.shape[0]):
                raise ConfigError(f"noise: map {i} has shape {tuple(n.shape)}, expected (1 or {latent.shape[0]}, "
                                  f"{', '.join(map(str, s.shape[1:]))})")
        wp = self.truncated(latent, space, 1.0, None, None, classes)
        return self.net.synthesis(wp, [n.to(self.device) for n in noise])

    def sefa_layers(self) -> list[tuple[str, int, torch.nn.Module]]:
        """SeFa's layers (genforce's ``layer_idx``), index i reading w+ row i: v1 ``layer{i}``; v2 the same
        for i < n - 1 and the last to-RGB for the last row."""
        c = self.net.config
        affines = {name: (row, mod) for name, row, mod in self.net.style_affines()}
        names = [f"layer{i}" for i in range(c.conv_layers)]
        if c.version == 2:
            names.append(f"output{c.blocks - 1}")
        return [(n, affines[n][0], affines[n][1]) for n in names]

    def sefa_resolutions(self) -> list[tuple[str, int]]:
        """:meth:`sefa_layers` as (name, output resolution): StyleGAN v1 draws two layers per resolution from
        4 px on (row i at 4 * 2^(i // 2)); StyleGAN2 one at 4 px, then two per resolution (4 * 2^((i + 1) // 2));
        to-RGB ``output{b}`` at 4 * 2^b."""
        v1 = self.net.config.version == 1
        return [(name, 4 * 2 ** int(name[len("output"):]) if name.startswith("output")
                 else 4 * 2 ** ((row // 2) if v1 else ((row + 1) // 2))) for name, row, _ in self.sefa_layers()]

    def sefa_pool(self, space: str):
        return None if space == "z" else self.sefa_resolutions()

    def latent_weights(self, space: str = "w", layers: Optional[Sequence[int]] = None):
        """``z``: the mapping's first layer (its z columns). ``w`` / ``w+``: SeFa's choice, the style affines
        (each (out, w_dim), style = A w + b), in SeFa's layer order; ``layers`` picks SeFa layer indices
        (0 .. n_latent - 1, as the release's ``-L``)."""
        self._check_space(space)
        if space == "z":
            return [("mapping.dense0", self.net.mapping.dense0.effective_weight().detach()[:, : self.z_dim].clone())]
        pool = self.sefa_layers()
        chosen = range(len(pool)) if layers is None else [int(i) for i in layers]
        bad = [i for i in chosen if not 0 <= i < len(pool)]
        if bad or not chosen:
            raise ConfigError(f"latent_weights: layer indices must be in 0..{len(pool) - 1}, got {list(chosen)}")
        return [(pool[i][0], pool[i][2].effective_weight().detach().clone()) for i in chosen]

    truncation_source = "the file's mean w (truncation.w_avg)"

    def describe(self) -> dict:
        c = self.net.config
        extra = {"truncation_cutoff": self.default_cutoff}
        if c.version == 2:
            extra["architecture"] = c.architecture
        return dict(super().describe(), **extra)


# ----------------------------------------------------------------------------- reading the file
def _weights_of(blob: dict) -> dict:
    """The dict holding ``generator`` / ``generator_smooth``: the blob, or a training checkpoint's ``models``."""
    if any(k in blob for k in WEIGHT_KEYS):
        return blob
    models = blob.get("models")
    if isinstance(models, dict) and any(k in models for k in WEIGHT_KEYS):
        return models
    return {}


def family_of(state: dict) -> Optional[str]:
    if not isinstance(state, dict):
        return None
    if is_pggan_state(state):
        return "pggan"
    version = is_stylegan_state(state)
    return {1: "stylegan", 2: "stylegan2"}.get(version)


def recognise_genforce(blob) -> bool:
    """True for a genforce checkpoint, or InterFaceGAN's own state dict of the same networks (key names
    only; nothing is built)."""
    if not isinstance(blob, dict):
        return False
    if interfacegan_family(blob):
        return True
    holder = _weights_of(blob)
    return any(family_of(holder.get(k)) for k in WEIGHT_KEYS)


def load_genforce(blob: dict, identity: Optional[dict] = None, map_location="cpu", **options) -> FrozenGenerator:
    """The frozen generator of a loaded genforce ``.pth`` dict (``torch.load(path, weights_only=True)``).

    ``identity``: the generator's identity (source, sha256, ...); the format, the family and the state
    dict used are added. ``options``: see the module docstring. Problems are one line each."""
    identity = dict(identity or {})
    source = str(identity.get("source", "genforce checkpoint"))
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"genforce load options: unknown {', '.join(unknown)}; expected some of {', '.join(OPTIONS)}")
    if not isinstance(blob, dict):
        raise DataFormatError(f"{source}: not a genforce checkpoint (a {type(blob).__name__}, expected a dict)")
    layout, notes = "genforce", {}
    if interfacegan_family(blob):
        if options.get("weights") is not None:
            raise ConfigError("weights: an InterFaceGAN file holds one state dict; leave weights out")
        if not as_tensors(blob):
            raise DataFormatError(f"{source}: InterFaceGAN's state dict holds something other than tensors")
        layout, key = "interfacegan", "interfacegan"
        state, notes = interfacegan_to_genforce(blob, interfacegan_family(blob), source)
    else:
        holder = _weights_of(blob)
        key = options.get("weights")
        if key is None:
            key = next((k for k in WEIGHT_KEYS if k in holder), None)
        elif key not in WEIGHT_KEYS:
            raise ConfigError(f"weights: expected one of {', '.join(WEIGHT_KEYS)}, got {key!r}")
        if key is None or key not in holder:
            found = ", ".join(sorted(map(str, blob))[:6])
            raise DataFormatError(f"{source}: no {key or 'generator_smooth or generator'} state dict (top-level keys: {found})")
        state = holder[key]
        if not as_tensors(state):
            raise DataFormatError(f"{source}: {key} is not a state dict of tensors")
    state = {k: v.detach().float() if v.is_floating_point() else v for k, v in state.items()}
    family = family_of(state)
    wanted = options.get("family")
    if wanted is not None and wanted not in FAMILIES:
        raise ConfigError(f"family: expected one of {', '.join(FAMILIES)}, got {wanted!r}")
    if family is None:
        keys = ", ".join(sorted(state)[:4])
        raise DataFormatError(f"{source}: {key} is not a genforce PGGAN, StyleGAN or StyleGAN2 state dict (keys: {keys})")
    if wanted is not None and wanted != family:
        raise ConfigError(f"family: {source} holds a genforce {family}, not {wanted}")
    identity.update(format=f"{layout}-{family}", state_dict=key)
    where = f"{source} [{key}]"
    lod = options.get("lod")

    if family == "pggan":
        for name in ("truncation_cutoff", "mapping_lr_mul", "demodulate"):
            if options.get(name) is not None:
                raise ConfigError(f"{name}: not an option of genforce PGGAN")
        fused = options.get("fused_scale")
        if layout == "interfacegan":
            found = bool(notes.pop("fused_layers", None))
            if fused is not None and bool(fused) != found:
                raise ConfigError(f"fused_scale: {source} stores {'fused' if found else 'plain'} upsampling layers")
            fused = found
        config = infer_pggan_config(state, source, label_size=int(options.get("label_size") or 0),
                                    fused_scale=fused, use_wscale=bool(options.get("use_wscale", True)),
                                    final_tanh=bool(options.get("final_tanh", False)))
        config.notes.update(notes)
        net = GenforcePGGAN(config)
        strict_load_state_dict(net, state, where, what=key)
        _set_lod(net.lod, lod, config.blocks, source)
        return GenforcePGGANAdapter(net.to(map_location), identity,
                                    normalize_latent=bool(options.get("normalize_latent", True)))

    if options.get("label_size") is not None:
        raise ConfigError("label_size: genforce StyleGAN files carry their label size; leave label_size out")
    fused = options.get("fused_scale", "auto") if family == "stylegan" else "auto"
    if layout == "interfacegan":
        layers = set(notes.pop("fused_layers", []))
        if options.get("fused_scale") is not None:
            raise ConfigError(f"fused_scale: {source} (InterFaceGAN's layout) stores which layers are fused; leave "
                              "fused_scale out")
        blocks = sum(1 for k in state if k.startswith("synthesis.output") and k.endswith(".weight"))
        fused = [2 * b in layers and b > 0 for b in range(blocks)]
    config = infer_stylegan_config(state, source, 1 if family == "stylegan" else 2,
                                   mapping_lr_mul=float(options.get("mapping_lr_mul", 0.01)),
                                   fused_scale=fused,
                                   use_wscale=bool(options.get("use_wscale", True)),
                                   final_tanh=bool(options.get("final_tanh", False)),
                                   demodulate=bool(options.get("demodulate", True)))
    if family == "stylegan2" and options.get("fused_scale") is not None:
        raise ConfigError("fused_scale: not an option of genforce StyleGAN2")
    if family != "stylegan2" and options.get("modconv") is not None:
        raise ConfigError(f"modconv: an option of genforce StyleGAN2 only (this file holds {family})")
    config.notes.update(notes)
    net = GenforceStyleGAN(config)
    if family == "stylegan2":
        net.set_modconv(options.get("modconv") or "auto")
    strict_load_state_dict(net, state, where, what=key)
    if family == "stylegan":
        _set_lod(net.synthesis.lod, lod, config.blocks, source)
    elif lod is not None:
        raise ConfigError("lod: genforce StyleGAN2 has no level of detail")
    return GenforceStyleGANAdapter(net.to(map_location), identity,
                                   normalize_latent=bool(options.get("normalize_latent", layout == "interfacegan")),
                                   truncation_cutoff=options.get("truncation_cutoff"))


def _set_lod(buffer: torch.Tensor, lod, blocks: int, source: str) -> None:
    if lod is not None:
        buffer.fill_(float(lod))
    value = float(buffer)
    if not 0.0 <= value <= blocks - 1:
        raise DataFormatError(f"{source}: level of detail {value} out of range [0, {blocks - 1}]")

"""NVIDIA's StyleGAN2 generators (StyleGAN2-ADA-PyTorch, StyleGAN3's ``networks_stylegan2``) as latentnav
generators, built from what :func:`latentnav.nvidia_pickle.read_network_pickle` reads out of a pickle
(the class, the recognised network version, ``init_kwargs`` and the state dict) without running the
pickle's embedded code: the network is our own port (:mod:`latentnav.generators.stylegan2_nvidia_layers`).

    records = read_network_pickle("ffhq.pkl")
    G = load_stylegan2_nvidia(records["G_ema"], identity={"source": "ffhq.pkl"})
    images = G.synthesize(G.sample(4, seed=0), "z", truncation=0.7, truncation_cutoff=8)

The two versions share the architecture; their defaults differ (used when ``init_kwargs`` leave them out):

=====================  ===========  ==========  ============  ==================================
version                w_avg_beta   conv_clamp  num_fp16_res  init_kwargs layout
=====================  ===========  ==========  ============  ==================================
stylegan2-ada          0.995        None        0             ``synthesis_kwargs={...}``
stylegan3-stylegan2    0.998        256         4             synthesis kwargs at the top level
=====================  ===========  ==========  ============  ==================================

``num_fp16_res`` (and ``fp16_channels_last``, ``fused_modconv_default``) are recorded, not used: the port
always computes in float32, as the releases do on the CPU and with ``force_fp32``.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from latentnav.errors import ConfigError, DataFormatError
from latentnav.generators.base import FrozenGenerator
from latentnav.generators.stylegan2_nvidia_layers import StyleGAN2Nvidia
from latentnav.nvidia_pickle import generator_record

FAMILY = "stylegan2-nvidia"
# version -> (the module its pickles name, defaults of Mapping / Synthesis keywords that differ)
VERSIONS = {
    "stylegan2-ada": ("training.networks", {"w_avg_beta": 0.995}, {"conv_clamp": None, "num_fp16_res": 0}),
    "stylegan3-stylegan2": ("training.networks_stylegan2", {"w_avg_beta": 0.998},
                            {"conv_clamp": 256, "num_fp16_res": 4}),
}
TOP_KEYS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
MAPPING_KEYS = ("num_layers", "embed_features", "layer_features", "activation", "lr_multiplier", "w_avg_beta")
SYNTHESIS_KEYS = ("channel_base", "channel_max", "num_fp16_res", "architecture", "resample_filter", "conv_clamp",
                  "kernel_size", "use_noise", "activation")
RECORDED_ONLY = ("fp16_channels_last", "fused_modconv_default")  # speed/training switches, not the maths


def split_init_kwargs(version: str, init_kwargs: dict) -> tuple[dict, dict, dict, dict]:
    """(top-level, mapping, synthesis, recorded-only) keywords of a pickled ``Generator``, the version's
    defaults filled in; an unknown keyword or version is one line."""
    if version not in VERSIONS:
        raise DataFormatError(f"StyleGAN2 (NVIDIA): unknown network version {version!r}; expected one of "
                              f"{', '.join(VERSIONS)}")
    _, mapping_defaults, synthesis_defaults = VERSIONS[version]
    kwargs = dict(init_kwargs)
    missing = [k for k in TOP_KEYS if k not in kwargs]
    if missing:
        raise DataFormatError(f"StyleGAN2 (NVIDIA) {version}: init_kwargs lack {', '.join(missing)}")
    top = {k: int(kwargs.pop(k)) for k in TOP_KEYS}
    mapping = dict(kwargs.pop("mapping_kwargs", None) or {})
    synthesis = dict(kwargs.pop("synthesis_kwargs", None) or {})
    if version == "stylegan3-stylegan2":  # its Generator takes the synthesis keywords directly
        synthesis.update(kwargs)
        kwargs = {}
    if kwargs:
        raise DataFormatError(f"StyleGAN2 (NVIDIA) {version}: unknown Generator keyword(s) {', '.join(sorted(kwargs))}")
    recorded = {k: synthesis.pop(k) for k in RECORDED_ONLY if k in synthesis}
    for name, given, allowed in (("mapping", mapping, MAPPING_KEYS), ("synthesis", synthesis, SYNTHESIS_KEYS)):
        unknown = sorted(set(given) - set(allowed))
        if unknown:
            raise DataFormatError(f"StyleGAN2 (NVIDIA) {version}: unknown {name} keyword(s) {', '.join(unknown)}")
    if "architecture" in synthesis and synthesis["architecture"] not in ("orig", "skip", "resnet"):
        raise DataFormatError(f"StyleGAN2 (NVIDIA): unknown architecture {synthesis['architecture']!r}")
    res = top["img_resolution"]
    if res < 4 or res & (res - 1):
        raise DataFormatError(f"StyleGAN2 (NVIDIA): img_resolution must be a power of two >= 4, got {res}")
    if top["z_dim"] <= 0:
        raise DataFormatError("StyleGAN2 (NVIDIA): a generator without a z input (z_dim 0) is not supported")
    mapping = {**mapping_defaults, **mapping}
    synthesis = {**synthesis_defaults, **synthesis}
    recorded["num_fp16_res"] = synthesis.pop("num_fp16_res")
    return top, mapping, synthesis, recorded


def build_stylegan2_nvidia(version: str, init_kwargs: dict) -> StyleGAN2Nvidia:
    """Our module for a pickled ``Generator`` of ``version`` ("stylegan2-ada" or "stylegan3-stylegan2")
    with the constructor keywords it was pickled with; parameters zero until a state dict is loaded."""
    top, mapping, synthesis, recorded = split_init_kwargs(version, init_kwargs)
    net = StyleGAN2Nvidia(**top, mapping_kwargs=mapping, synthesis_kwargs=synthesis)
    net.synthesis.num_fp16_res = recorded.pop("num_fp16_res")
    net.version, net.recorded_kwargs = version, recorded
    net.conv_clamp = synthesis.get("conv_clamp")
    net.architecture = synthesis.get("architecture", "skip")
    return net


def _unpack(record: Any) -> tuple[str, dict, dict]:
    if isinstance(record, (tuple, list)) and len(record) == 3:
        version, init_kwargs, state = record
        return version, dict(init_kwargs), dict(state)
    for attr in ("version", "init_kwargs", "state_dict"):
        if not hasattr(record, attr):
            raise DataFormatError(f"StyleGAN2 (NVIDIA): expected a pickled network record, got {type(record).__name__}")
    class_name = getattr(record, "class_name", "Generator")
    if class_name != "Generator":
        raise DataFormatError(f"StyleGAN2 (NVIDIA): the record is a {class_name}, not a Generator")
    if getattr(record, "init_args", None):
        raise DataFormatError("StyleGAN2 (NVIDIA): the Generator was built with positional arguments; "
                              "only keyword arguments (as the training code uses) are supported")
    if record.version is None:
        sha = str(getattr(record, "source_sha256", ""))[:16]
        raise DataFormatError(f"StyleGAN2 (NVIDIA): the Generator's embedded source ({sha or 'no hash'}) is not a "
                              f"published revision; name its version ({' or '.join(VERSIONS)}) if you know it")
    return record.version, dict(record.init_kwargs), dict(record.state_dict())


def _modconv_form(value: Union[bool, str]) -> Union[bool, str]:
    """True (grouped weights), False (shared weight) or "auto" (chosen per call); anything else one line."""
    if value == "auto" or isinstance(value, bool):
        return value
    raise ConfigError(f"fused_modconv: expected true, false or auto, got {value!r}")


def recognise_stylegan2_nvidia(blob: Any) -> bool:
    """Whether ``blob`` (``read_network_pickle``'s dict, or one record) holds a generator this module
    builds (a ``Generator`` of a version in :data:`VERSIONS`). Cheap: reads no tensor."""
    try:
        record = generator_record(blob)
    except DataFormatError:
        return False
    if isinstance(record, (tuple, list)):
        return len(record) == 3 and record[0] in VERSIONS
    return getattr(record, "class_name", None) == "Generator" and getattr(record, "version", None) in VERSIONS


def load_stylegan2_nvidia(record: Any, identity: Optional[dict] = None, map_location="cpu",
                          fused_modconv: Union[bool, str] = "auto", w_avg_samples: int = 10000) -> "StyleGAN2NvidiaAdapter":
    """The generator of a record from ``read_network_pickle`` (a ``PersistentObject``; the pickle's whole
    dict picks ``G_ema``, else ``G``) or of ``(version, init_kwargs, state_dict)``, as a
    :class:`StyleGAN2NvidiaAdapter` on ``map_location``. The state dict loads strictly."""
    version, init_kwargs, state = _unpack(generator_record(record))
    net = build_stylegan2_nvidia(version, init_kwargs)
    state = {k: (v if isinstance(v, torch.Tensor) else torch.as_tensor(v)) for k, v in state.items()}
    own = net.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        what = (f"missing {', '.join(missing[:3])}" if missing else "") + ("; " if missing and unexpected else "") + \
               (f"unexpected {', '.join(unexpected[:3])}" if unexpected else "")
        raise DataFormatError(f"StyleGAN2 (NVIDIA) {version}: the weights do not fit its init_kwargs ({what})")
    wrong = [k for k in own if tuple(state[k].shape) != tuple(own[k].shape)]
    if wrong:
        k = wrong[0]
        raise DataFormatError(f"StyleGAN2 (NVIDIA) {version}: {k} has shape {tuple(state[k].shape)}, "
                              f"its init_kwargs give {tuple(own[k].shape)}")
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    net.fused_modconv = _modconv_form(fused_modconv)
    return StyleGAN2NvidiaAdapter(net.to(map_location), identity, w_avg_samples)


class StyleGAN2NvidiaAdapter(FrozenGenerator):
    """NVIDIA StyleGAN2 with ``z``, ``w`` (w_dim,) and ``w+`` (num_ws, w_dim) latents; class-conditional
    when the net has ``c_dim`` > 0 (``classes`` become one-hot labels for the mapping; w and w+ latents
    already carry their class). Truncation pulls w+ towards ``w_avg`` from the pickle (or a given
    latent), on the first ``truncation_cutoff`` rows when given. Images are the synthesis network's
    output as is, nominally in [-1, 1] and not clamped (as the releases return them).

    ``fused_modconv`` (settable): the modulated convolution as one grouped convolution (True, what the
    releases run in eval), as activation scaling around a shared convolution (False), or chosen per call
    ("auto", the default: grouped weights only for one sample without gradients)."""

    latent_spaces = ("z", "w", "w+")

    def __init__(self, net: StyleGAN2Nvidia, identity: Optional[dict] = None, w_avg_samples: int = 10000) -> None:
        super().__init__(net.img_resolution, net.z_dim, identity, num_classes=net.c_dim)
        self.net = net
        self.w_dim, self.num_ws = net.w_dim, net.num_ws
        self.mapping_layers = net.mapping.num_layers
        self.identity.setdefault("version", getattr(net, "version", None))
        if hasattr(net.mapping, "w_avg"):
            w_avg = net.mapping.w_avg.detach().clone()
            self.identity["w_avg"] = "w_avg from the pickle"
        else:
            w_avg = self._estimate_w_avg(w_avg_samples)
            self.identity["w_avg"] = f"estimated from {w_avg_samples} samples (the pickle has no w_avg)"
        self.register_buffer("w_avg", w_avg.float())
        self.freeze()

    @torch.no_grad()
    def _estimate_w_avg(self, n: int) -> torch.Tensor:
        z = torch.randn(n, self.z_dim, generator=torch.Generator().manual_seed(0)).to(self.net.mapping.fc0.weight.device)
        c = None
        if self.num_classes:
            c = F.one_hot(torch.arange(n) % self.num_classes, self.num_classes).float().to(z.device)
        chunks = [self.net.map(zc, None if c is None else c[i * 1000: i * 1000 + len(zc)])
                  for i, zc in enumerate(z.split(1000))]
        return torch.cat(chunks).mean(0)

    @property
    def fused_modconv(self) -> bool:
        return self.net.fused_modconv

    @fused_modconv.setter
    def fused_modconv(self, value: Union[bool, str]) -> None:
        self.net.fused_modconv = _modconv_form(value)

    def describe(self) -> dict:
        """The contract's facts plus the network's: version, architecture, clamp, fp16 setting (ignored)."""
        net = self.net
        return {**super().describe(), "family": f"{FAMILY} ({getattr(net, 'version', '?')})",
                "architecture": getattr(net, "architecture", "skip"), "conv_clamp": getattr(net, "conv_clamp", None),
                "num_fp16_res": f"{net.synthesis.num_fp16_res} (ignored: float32 throughout)",
                "fused_modconv": self.fused_modconv, "images": "as the network outputs them (not clamped)"}

    # ----------------------------------------------------------------- latents
    def latent_shape(self, space: str = "z") -> tuple[int, ...]:
        self._check_space(space)
        return {"z": (self.z_dim,), "w": (self.w_dim,), "w+": (self.num_ws, self.w_dim)}[space]

    def _labels(self, classes, batch: int) -> Optional[torch.Tensor]:
        classes = self.check_classes(classes, batch)
        return None if classes is None else F.one_hot(classes, self.num_classes).float()

    def to_space(self, z: torch.Tensor, space: str, classes=None) -> torch.Tensor:
        self.check_latent(z, "z")
        if space == "z":
            return z
        self._check_space(space)
        w = self.net.map(z.to(self.device), self._labels(classes, z.shape[0]))
        return w if space == "w" else self.net.broadcast(w)

    def truncated(self, latent: torch.Tensor, space: str = "z", truncation: float = 1.0,
                  truncation_latent: Optional[torch.Tensor] = None, classes=None,
                  truncation_cutoff: Optional[int] = None) -> torch.Tensor:
        """The w+ (B, num_ws, w_dim) the synthesis network receives."""
        ws = latent.to(self.device).float()
        if space == "z":
            ws = self.net.map(ws, self._labels(classes, ws.shape[0]))
        if ws.ndim == 2:
            ws = self.net.broadcast(ws)
        if truncation != 1.0:
            centre = self.w_avg if truncation_latent is None else truncation_latent.to(ws)
            ws = self.net.truncate(ws, truncation, centre, truncation_cutoff)
        return ws

    # ----------------------------------------------------------------- images
    def _image(self, img: torch.Tensor) -> torch.Tensor:
        return img.expand(-1, 3, -1, -1) if img.shape[1] == 1 else img  # grey nets: three equal channels

    def _synthesize(self, latent, space, truncation, noise_mode, truncation_latent, classes=None, truncation_cutoff=None):
        ws = self.truncated(latent, space, truncation, truncation_latent, classes, truncation_cutoff)
        return self._image(self.net.synthesis(ws, noise_mode, self.net.fused_modconv))

    def _noise_layers(self):
        return [conv for conv in self.net.synthesis.noise_layers() if conv.use_noise]

    def noise_maps(self) -> list[torch.Tensor]:
        """Each noisy convolution's stored map (1, 1, r, r), in synthesis order (b4.conv1, b8.conv0, ...),
        before its ``noise_strength`` scales it."""
        return [conv.noise_const[None, None] for conv in self._noise_layers()]

    def synthesize_with_noise(self, latent: torch.Tensor, space: str, noise: Sequence[torch.Tensor],
                              classes=None) -> torch.Tensor:
        self.check_latent(latent, space)
        layers = self._noise_layers()
        if len(noise) != len(layers):
            raise ConfigError(f"noise: expected {len(layers)} maps, got {len(noise)}")
        ws = self.truncated(latent, space, 1.0, None, self.check_classes(classes, latent.shape[0]))
        given = iter(noise)
        maps = [next(given).to(self.device) if conv.use_noise else None for conv in self.net.synthesis.noise_layers()]
        return self._image(self.net.synthesis(ws, maps, self.net.fused_modconv))

    # ----------------------------------------------------------------- weights
    def style_layers(self) -> list[tuple[str, int, torch.nn.Module]]:
        """(name, w+ row, layer) of every style-consuming layer in synthesis order: ``b4.conv1`` (row 0),
        ``b4.torgb`` (1), ``b8.conv0`` (1), ``b8.conv1`` (2), ``b8.torgb`` (3), ... (a to-RGB shares its
        row with the next block's conv0; 'orig' / 'resnet' nets have the last block's to-RGB only)."""
        out, row = [], 0
        for block in self.net.synthesis.blocks():
            for k, conv in enumerate(block.convs()):
                out.append((f"b{block.resolution}.conv{k if block.cin else 1}", row + k, conv))
            if block.num_torgb:
                out.append((f"b{block.resolution}.torgb", row + block.num_conv, block.torgb))
            row += block.num_conv
        return out

    def sefa_layer_names(self) -> list[str]:
        """genforce/sefa's StyleGAN2 choice ("all"): every convolution, then the last to-RGB only."""
        names = [n for n, _, _ in self.style_layers()]
        return [n for n in names if not n.endswith("torgb")] + [names[-1]]

    def sefa_pool(self, space: str):
        """w / w+: :meth:`sefa_layer_names` with each layer's output resolution (``b{r}``)."""
        if space == "z":
            return None
        return [(name, int(name.split(".")[0][1:])) for name in self.sefa_layer_names()]

    def latent_weights(self, space: str = "w", layers: Optional[Sequence[int]] = None):
        """``z``: the mapping's first layer, ``mapping.fc0``, as applied (x lr_multiplier / sqrt(in)), its
        z columns only for a conditional net; it acts on z normalised to unit second moment.
        ``w``/``w+``: every style affine of :meth:`style_layers` (named ``b4.conv1``, ``b4.torgb``, ...;
        out = the layer's input channels), x 1/sqrt(w_dim) as applied; a to-RGB further scales its
        styles by 1/sqrt(C). ``layers`` picks indices of that list."""
        self._check_space(space)
        if space == "z":
            return [("mapping.fc0", self.net.mapping.fc0.effective_weight()[:, : self.z_dim].detach().clone())]
        styles = self.style_layers()
        chosen = range(len(styles)) if layers is None else layers
        try:
            return [(styles[i][0], styles[i][2].affine.effective_weight().detach().clone()) for i in chosen]
        except IndexError:
            raise ConfigError(f"latent_weights: layer indices must be in 0..{len(styles) - 1}, got {list(chosen)}") from None

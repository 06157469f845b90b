"""TensorFlow-era StyleGAN2 generators (``stylegan2-*-config-e/f.pkl``, StyleGAN2-ADA's TF release) as the
StyleGAN2-ADA-PyTorch generator: its init_kwargs and state dict, built from the TF variables by the
published correspondence between the two formats, then our port
(:mod:`latentnav.generators.stylegan2_nvidia`). Nothing of the pickle runs (see :mod:`latentnav.tf_pickle`).

    G = load_tf_stylegan2("stylegan2-ffhq-config-f.pkl", identity={"source": "..."})

The correspondence (TF name under Gs -> ADA name), from the two formats:

* ``dlatent_avg`` -> ``mapping.w_avg``; ``mapping/Dense{i}/{weight,bias}`` -> ``mapping.fc{i}`` (TF dense
  weights are (in, out): transposed); ``mapping/LabelEmbed`` -> ``mapping.embed`` (ADA's TF release).
  Learning-rate multipliers are gains applied at run time in both formats, so values copy as they are.
* ``synthesis/4x4/Const/const`` (1, C, 4, 4) -> ``synthesis.b4.const`` (C, 4, 4).
* Each modulated convolution ``synthesis/{r}x{r}/{Conv,Conv0_up,Conv1}``: ``weight`` (kh, kw, in, out) ->
  (out, in, kh, kw), spatially flipped for the up-sampling ``Conv0_up`` (TF runs it as a transposed
  convolution); ``mod_weight`` (w_dim, in) transposed -> ``affine.weight``; ``mod_bias`` + 1 ->
  ``affine.bias`` (TF adds the 1 at run time, ADA initialises the bias to 1); ``noise_strength``,
  ``bias`` as they are. Layer 4x4/Conv is ``b4.conv1``; ``Conv0_up`` / ``Conv1`` of r are ``b{r}.conv0`` /
  ``b{r}.conv1``.
* ``synthesis/noise{k}`` (1, 1, H, W) -> ``noise_const`` (H, W) of the k-th convolution in order (4x4/Conv
  is 0; r's Conv0_up is 2 log2(r) - 5, its Conv1 2 log2(r) - 4).
* ``synthesis/{r}x{r}/ToRGB`` -> ``b{r}.torgb`` (as a convolution, not flipped); for the ``resnet``
  architecture ``synthesis/{r}x{r}/Skip/weight`` -> ``b{r}.skip.weight`` (flipped: up-sampling).
* ``resample_filter`` buffers: the normalised outer product of ``resample_kernel`` (default [1, 3, 3, 1]).
* Static keyword arguments: ``latent_size`` z_dim, ``dlatent_size`` w_dim, ``label_size`` c_dim,
  ``resolution``, ``num_channels``, ``mapping_layers``, ``mapping_fmaps``, ``label_fmaps``,
  ``mapping_lrmul``, ``mapping_nonlinearity``, ``w_avg_beta`` / ``dlatent_avg_beta``, ``fmap_base`` (ADA's
  ``channel_base`` is twice it), ``fmap_max``, ``architecture``, ``resample_kernel``, ``nonlinearity``,
  ``use_noise``, ``conv_clamp``, ``num_fp16_res``; run-time ones (truncation, style mixing, noise
  randomisation, dtype) are ignored.

Not convertible, refused in one line: StyleGAN2 configs A-D and StyleGAN (v1) networks (other graph
builders, ``ToRGB_lod`` layers), and TF StyleGAN2's class-conditional mapping (``LabelConcat``: labels
concatenated to z before normalisation, which ADA's generator does not compute).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Optional

import numpy as np
import torch

from latentnav.errors import DataFormatError
from latentnav.tf_pickle import TFNetwork, collect_variables, read_tf_network_pickle

# What each static keyword becomes (None: read in convert_tf_generator) and the run-time ones ignored.
_MAPPED = {"latent_size", "label_size", "dlatent_size", "resolution", "num_channels", "mapping_layers", "mapping_fmaps",
           "label_fmaps", "mapping_nonlinearity", "mapping_lrmul", "w_avg_beta", "dlatent_avg_beta", "fmap_base",
           "fmap_max", "num_fp16_res", "conv_clamp", "architecture", "resample_kernel", "use_noise", "nonlinearity"}
_RUNTIME = {"truncation_psi", "truncation_cutoff", "truncation_psi_val", "truncation_cutoff_val", "style_mixing_prob",
            "structure", "randomize_noise", "fused_modconv", "is_training", "is_validation", "return_dlatents", "dtype",
            "is_template_graph"}
_NEUTRAL = {"normalize_latents": (True,), "fmap_decay": (1, 1.0), "mapping_func": ("G_mapping",),
            "synthesis_func": ("G_synthesis_stylegan2", "G_synthesis")}
_BUILDERS = {"": ("G_main", ""), "mapping": ("G_mapping", ""), "synthesis": ("G_synthesis_stylegan2", "G_synthesis", "")}


def _func(net: TFNetwork) -> str:
    """The graph builder's function name (dnnlib stores the bare name; a dotted one is read to its last part)."""
    name = net.build_func_name if isinstance(net.build_func_name, str) else ""
    return name.rsplit(".", 1)[-1]


def _tensor(value: Any) -> torch.Tensor:
    return torch.from_numpy(np.array(value, dtype=np.float32, order="C"))  # a copy; 0-d stays 0-d


def resample_filter(kernel) -> torch.Tensor:
    """The 2-D low-pass filter a 1-D ``resample_kernel`` stands for: outer product, summing to 1."""
    k = torch.as_tensor(np.asarray(kernel, dtype=np.float32))
    f = torch.outer(k, k) if k.ndim == 1 else k
    return f / f.sum()


class _Variables:
    """The TF variables by name; every one must be used (an unused one is a layer we do not know)."""

    def __init__(self, values: dict, source):
        self.values, self.used, self.source = values, set(), source

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def __call__(self, name: str) -> np.ndarray:
        if name not in self.values:
            raise DataFormatError(f"{self.source}: the TensorFlow generator has no variable {name} "
                                  "(not a StyleGAN2 config E/F generator?)")
        self.used.add(name)
        return self.values[name]

    def check_all_used(self) -> None:
        left = [name for name in self.values if name not in self.used]
        if left:
            raise DataFormatError(f"{self.source}: the TensorFlow generator has variables no StyleGAN2 (config E/F) "
                                  f"layer has: {', '.join(left[:3])}; it cannot be converted")


def _check_kwargs(net: TFNetwork, source) -> dict:
    kwargs = dict(net.static_kwargs)
    for name, value in kwargs.items():
        if name in _MAPPED or name in _RUNTIME:
            continue
        if name in _NEUTRAL:
            if value not in _NEUTRAL[name]:
                raise DataFormatError(f"{source}: the TensorFlow generator sets {name}={value!r}, which the "
                                      "StyleGAN2-ADA generator does not compute; it cannot be converted")
            continue
        raise DataFormatError(f"{source}: unknown TensorFlow generator setting {name}={value!r}; it cannot be converted")
    for scope, node in (("", net), ("mapping", net.components.get("mapping")), ("synthesis", net.components.get("synthesis"))):
        if node is None:
            raise DataFormatError(f"{source}: the TensorFlow generator has no {scope} network")
        if _func(node) not in _BUILDERS[scope]:
            raise DataFormatError(f"{source}: the TensorFlow {scope or 'generator'} was built by "
                                  f"{node.build_func_name!r}, not StyleGAN2's {_BUILDERS[scope][0]} (configs A-D and "
                                  "StyleGAN v1 networks are not supported)")
    return kwargs


def convert_tf_generator(net: TFNetwork, source: str | os.PathLike = "TensorFlow pickle") -> tuple[dict, "OrderedDict[str, torch.Tensor]"]:
    """``(init_kwargs, state_dict)`` of the StyleGAN2-ADA-PyTorch ``Generator`` equal to the TF generator
    ``net`` (Gs, or G): keyword layout ``{z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs,
    synthesis_kwargs}``, names and shapes as ADA's ``Generator.state_dict()``."""
    kw = _check_kwargs(net, source)
    tf = _Variables(collect_variables(net), source)

    def get(name, default=None):
        value = kw.get(name, default)
        return default if value is None else value

    resolution = int(get("resolution", 1024))
    log2 = int(np.log2(resolution))
    if resolution < 4 or 2 ** log2 != resolution:
        raise DataFormatError(f"{source}: the TensorFlow generator's resolution {resolution} is not a power of two >= 4")
    c_dim = int(get("label_size", 0))
    w_dim = int(get("dlatent_size", 512))
    architecture = get("architecture", "skip")
    if architecture not in ("skip", "resnet", "orig"):
        raise DataFormatError(f"{source}: unknown TensorFlow generator architecture {architecture!r}")
    if c_dim and "mapping/LabelConcat/weight" in tf:
        raise DataFormatError(f"{source}: a class-conditional TensorFlow StyleGAN2 (LabelConcat mapping) cannot be "
                              "converted: StyleGAN2-ADA embeds and normalises labels separately")
    num_layers = int(get("mapping_layers", 8))
    layer_features = kw.get("mapping_fmaps")
    if layer_features is None and num_layers > 1 and "mapping/Dense0/weight" in tf:
        width = tf.values["mapping/Dense0/weight"].shape[1]
        layer_features = None if width == w_dim else int(width)  # TF StyleGAN2's default was 512, ADA's w_dim
    embed_features = kw.get("label_fmaps")
    if embed_features is None and c_dim and "mapping/LabelEmbed/weight" in tf:
        width = tf.values["mapping/LabelEmbed/weight"].shape[1]
        embed_features = None if width == w_dim else int(width)
    beta = kw["w_avg_beta"] if "w_avg_beta" in kw else kw.get("dlatent_avg_beta", 0.995)
    kernel = list(get("resample_kernel", [1, 3, 3, 1]))
    use_noise = bool(get("use_noise", True))
    init_kwargs = {
        "z_dim": int(get("latent_size", 512)), "c_dim": c_dim, "w_dim": w_dim,
        "img_resolution": resolution, "img_channels": int(get("num_channels", 3)),
        "mapping_kwargs": {
            "num_layers": num_layers, "embed_features": embed_features, "layer_features": layer_features,
            "activation": get("mapping_nonlinearity", "lrelu"), "lr_multiplier": get("mapping_lrmul", 0.01),
            "w_avg_beta": 1 if beta is None else beta,
        },
        "synthesis_kwargs": {
            "channel_base": int(get("fmap_base", 16384)) * 2, "channel_max": int(get("fmap_max", 512)),
            "num_fp16_res": int(get("num_fp16_res", 0)), "conv_clamp": kw.get("conv_clamp"),
            "architecture": architecture, "resample_filter": kernel, "use_noise": use_noise,
            "activation": get("nonlinearity", "lrelu"),
        },
    }

    filt = resample_filter(kernel)
    state: "OrderedDict[str, torch.Tensor]" = OrderedDict()

    def conv(pt: str, scope: str, noise: int, up: bool) -> None:
        w = tf(f"{scope}/weight")
        if up:
            w = w[::-1, ::-1]
        state[f"{pt}.weight"] = _tensor(w.transpose(3, 2, 0, 1))
        if use_noise:
            state[f"{pt}.noise_strength"] = _tensor(tf(f"{scope}/noise_strength"))
        state[f"{pt}.bias"] = _tensor(tf(f"{scope}/bias"))
        state[f"{pt}.resample_filter"] = filt.clone()
        if use_noise:
            state[f"{pt}.noise_const"] = _tensor(tf(f"synthesis/noise{noise}")[0, 0])
        state[f"{pt}.affine.weight"] = _tensor(tf(f"{scope}/mod_weight").T)
        state[f"{pt}.affine.bias"] = _tensor(tf(f"{scope}/mod_bias") + 1)

    def torgb(pt: str, scope: str) -> None:
        state[f"{pt}.weight"] = _tensor(tf(f"{scope}/weight").transpose(3, 2, 0, 1))
        state[f"{pt}.bias"] = _tensor(tf(f"{scope}/bias"))
        state[f"{pt}.affine.weight"] = _tensor(tf(f"{scope}/mod_weight").T)
        state[f"{pt}.affine.bias"] = _tensor(tf(f"{scope}/mod_bias") + 1)

    for level in range(2, log2 + 1):
        r = 2 ** level
        block, scope = f"synthesis.b{r}", f"synthesis/{r}x{r}"
        if r == 4:
            state[f"{block}.const"] = _tensor(tf(f"{scope}/Const/const")[0])
        state[f"{block}.resample_filter"] = filt.clone()
        if r == 4:
            conv(f"{block}.conv1", f"{scope}/Conv", 0, up=False)
        else:
            conv(f"{block}.conv0", f"{scope}/Conv0_up", 2 * level - 5, up=True)
            conv(f"{block}.conv1", f"{scope}/Conv1", 2 * level - 4, up=False)
        if architecture == "skip" or r == resolution:
            torgb(f"{block}.torgb", f"{scope}/ToRGB")
        if architecture == "resnet" and r > 4:
            state[f"{block}.skip.weight"] = _tensor(tf(f"{scope}/Skip/weight")[::-1, ::-1].transpose(3, 2, 0, 1))
            state[f"{block}.skip.resample_filter"] = filt.clone()

    state["mapping.w_avg"] = _tensor(tf("dlatent_avg"))
    if c_dim:
        state["mapping.embed.weight"] = _tensor(tf("mapping/LabelEmbed/weight").T)
        state["mapping.embed.bias"] = _tensor(tf("mapping/LabelEmbed/bias"))
    for i in range(num_layers):
        state[f"mapping.fc{i}.weight"] = _tensor(tf(f"mapping/Dense{i}/weight").T)
        state[f"mapping.fc{i}.bias"] = _tensor(tf(f"mapping/Dense{i}/bias"))
    tf.check_all_used()
    return init_kwargs, state


def _generator_network(blob: Any) -> Optional[TFNetwork]:
    if isinstance(blob, TFNetwork):
        return blob
    if isinstance(blob, dict):
        for key in ("Gs", "G"):
            if isinstance(blob.get(key), TFNetwork):
                return blob[key]
    return None


def recognise_tf_stylegan2(blob: Any) -> bool:
    """Whether ``blob`` (:func:`latentnav.tf_pickle.read_tf_network_pickle`'s dict, or a TFNetwork) holds a
    StyleGAN2 generator this module converts (by its graph builders' names; reads no variable)."""
    net = _generator_network(blob)
    if net is None or _func(net) not in _BUILDERS[""]:
        return False
    return all(isinstance(net.components.get(k), TFNetwork) and _func(net.components[k]) in _BUILDERS[k]
               for k in ("mapping", "synthesis"))


def load_tf_stylegan2(blob: Any, identity: Optional[dict] = None, map_location="cpu", **options):
    """The generator (Gs, else G) of a TF StyleGAN2 pickle -- a path, ``read_tf_network_pickle``'s dict or a
    TFNetwork -- converted and built by :func:`latentnav.generators.stylegan2_nvidia.load_stylegan2_nvidia`
    (``options``: its ``fused_modconv``, ``w_avg_samples``)."""
    from latentnav.generators.stylegan2_nvidia import load_stylegan2_nvidia

    source = "TensorFlow pickle"
    if isinstance(blob, (str, os.PathLike)):
        source, blob = str(blob), read_tf_network_pickle(blob)
    net = _generator_network(blob)
    if net is None:
        raise DataFormatError(f"{source}: no TensorFlow generator (Gs or G) in it")
    init_kwargs, state = convert_tf_generator(net, source)
    identity = dict(identity or {})
    identity.setdefault("format", "TensorFlow StyleGAN2 pickle (converted to the StyleGAN2-ADA layout)")
    return load_stylegan2_nvidia(("stylegan2-ada", init_kwargs, state), identity, map_location, **options)

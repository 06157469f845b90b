"""NVIDIA's StyleGAN2 state dict (StyleGAN2-ADA's ``networks.py``, StyleGAN3's ``networks_stylegan2.py``, a
converted TensorFlow pickle) rewritten in the rosinality port's ``g_ema`` layout (``generators/stylegan2.py``).

The two are the same network written twice, so the rewrite is a renaming plus two facts of the formats:

- rosinality keeps 5-d modulated weights (1, out, in, k, k) and a (1, C, 4, 4) constant; NVIDIA keeps
  (out, in, k, k) and (C, 4, 4) (both upsample with a transposed convolution of the kernel as stored, so no
  flip: checked against the original code, see tests/generators/test_rosinality_layout.py);
- the mapping's runtime gain is ``lr / sqrt(in)`` in both, but rosinality fixes lr at 0.01 (it is not in the
  file), so weights and biases of a mapping trained with another lr are rescaled by ``lr / 0.01``.

Only networks the port can express convert: the ``skip`` architecture, no class input, z as wide as w, RGB,
and no activation clamp (``conv_clamp``): a clamp changes the images wherever it fires, so it is refused
unless ``drop_clamp`` (the caller then measures and reports the difference).
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from latentnav.errors import ConfigError
from latentnav.generators.stylegan2 import StyleGAN2Generator, infer_config

ROSINALITY_LR_MLP = 0.01


def conversion_blocker(config: dict) -> Optional[str]:
    """Why a network with these settings cannot be written in rosinality's layout (None: it can).

    ``config``: ``architecture``, ``c_dim``, ``z_dim``, ``w_dim``, ``img_channels``, ``conv_clamp`` as the
    network was built (defaults of its version filled in)."""
    if config.get("architecture", "skip") != "skip":
        return f"architecture {config['architecture']!r} (rosinality's port is 'skip' only)"
    if int(config.get("c_dim", 0)):
        return f"a class input (c_dim {config['c_dim']}; the port has none)"
    if config.get("z_dim") != config.get("w_dim"):
        return f"z_dim {config.get('z_dim')} != w_dim {config.get('w_dim')} (the port has one style size)"
    if int(config.get("img_channels", 3)) != 3:
        return f"{config['img_channels']} image channels (the port draws RGB)"
    return None


def nvidia_to_rosinality(state: dict[str, torch.Tensor], config: dict, drop_clamp: bool = False) -> dict:
    """``{"g_ema": state dict, "latent_avg": (w_dim,)}`` for an NVIDIA StyleGAN2 ``state`` (the Generator's
    ``state_dict()``: ``mapping.*``, ``synthesis.b{res}.*``). ``config`` as :func:`conversion_blocker`, plus
    ``img_resolution``, ``mapping_layers`` and ``mapping_lr`` (the mapping's lr multiplier)."""
    blocker = conversion_blocker(config)
    if blocker:
        raise ConfigError(f"cannot write this generator in rosinality's layout: {blocker}")
    if config.get("conv_clamp") is not None and not drop_clamp:
        raise ConfigError(f"cannot write this generator in rosinality's layout exactly: it clamps activations at "
                          f"{config['conv_clamp']} and the port does not; give --drop_clamp to convert anyway "
                          "(the images then differ wherever the clamp fired; convert reports by how much)")
    ratio = float(config.get("mapping_lr", 0.01)) / ROSINALITY_LR_MLP
    out: dict[str, torch.Tensor] = {}
    for i in range(int(config["mapping_layers"])):
        out[f"style.{i + 1}.weight"] = state[f"mapping.fc{i}.weight"] * ratio
        out[f"style.{i + 1}.bias"] = state[f"mapping.fc{i}.bias"] * ratio

    def layer(src: str, dst: str) -> None:
        out[f"{dst}.conv.weight"] = state[f"{src}.weight"].unsqueeze(0)
        out[f"{dst}.conv.modulation.weight"] = state[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = state[f"{src}.affine.bias"]
        out[f"{dst}.noise.weight"] = state[f"{src}.noise_strength"].reshape(1)
        out[f"{dst}.activate.bias"] = state[f"{src}.bias"]

    def to_rgb(src: str, dst: str) -> None:
        out[f"{dst}.conv.weight"] = state[f"{src}.weight"].unsqueeze(0)
        out[f"{dst}.conv.modulation.weight"] = state[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = state[f"{src}.affine.bias"]
        out[f"{dst}.bias"] = state[f"{src}.bias"].reshape(1, -1, 1, 1)

    out["input.input"] = state["synthesis.b4.const"].unsqueeze(0)
    layer("synthesis.b4.conv1", "conv1")
    to_rgb("synthesis.b4.torgb", "to_rgb1")
    noises = [state["synthesis.b4.conv1.noise_const"]]
    for j in range(int(math.log2(int(config["img_resolution"]))) - 2):
        block = f"synthesis.b{2 ** (j + 3)}"
        layer(f"{block}.conv0", f"convs.{2 * j}")
        layer(f"{block}.conv1", f"convs.{2 * j + 1}")
        to_rgb(f"{block}.torgb", f"to_rgbs.{j}")
        noises += [state[f"{block}.conv0.noise_const"], state[f"{block}.conv1.noise_const"]]
    for i, noise in enumerate(noises):
        out[f"noises.noise_{i}"] = noise.reshape(1, 1, *noise.shape[-2:])
    # The blur kernels are fixed buffers of the port ([1, 3, 3, 1] scaled for upsampling), not weights: take
    # them from the port itself, so the file loads strictly as rosinality's own checkpoints do.
    port = StyleGAN2Generator(infer_config(out, "converted"))
    for key, value in port.state_dict().items():
        out.setdefault(key, value)
    return {"g_ema": {k: v.detach().float().clone() for k, v in out.items()},
            "latent_avg": state["mapping.w_avg"].detach().float().clone()}

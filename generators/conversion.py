"""``latentnav generator convert``: any recognised generator as a plain weights-only file, or (NVIDIA
StyleGAN2 networks the port can express) in rosinality's ``g_ema`` layout.

Every conversion is checked before it is reported: the written file is loaded back through
``load_generator`` and its images are compared with the source's on a few seeded latents (and classes).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from latentnav.atomic import atomic_torch_save
from latentnav.errors import ConfigError
from latentnav.generators import families
from latentnav.generators.loading import FORMAT, load_generator
from latentnav.safe_load import safe_torch_load, sha256_of


def plain_blob(G, source: Path) -> dict:
    """latentnav's weights-only file of a loaded generator ``G`` (read from ``source``)."""
    converted_from = {"source": source.name, "sha256": G.identity.get("sha256"), "format": G.identity.get("format")}
    if hasattr(G, "nvidia_network"):
        arch, init_kwargs = G.nvidia_network
        state = {k: v.detach().cpu().clone() for k, v in G.net.state_dict().items()}
        return {"format": FORMAT, "arch": arch, "family_blob": {"init_kwargs": init_kwargs, "state_dict": state},
                "converted_from": converted_from}
    fmt = G.identity.get("format")
    if fmt == "rosinality-stylegan2":
        return {"g_ema": {k: v.detach().cpu().clone() for k, v in G.net.state_dict().items()},
                "latent_avg": G.w_avg.detach().cpu().clone()}
    if fmt in ("torchscript", "class_path", "latentnav-dcgan"):
        raise ConfigError(f"{source}: a {fmt} generator is already a file latentnav loads; nothing to convert")
    blob = safe_torch_load(source)
    family = families.recognise(blob) if isinstance(blob, dict) else None
    if family is None:
        raise ConfigError(f"{source}: not a generator family latentnav converts ({fmt})")
    options = dict((G.identity.get("options") or {}).get("family_options") or {})
    if "config" in G.identity and family.name == "biggan" and G.identity.get("format") == "pytorch-pretrained-biggan":
        options["config"] = G.identity["config"]  # the JSON beside the weights, kept inside the one file
    return {"format": FORMAT, "arch": family.name, "family_blob": blob, "family_options": options,
            "converted_from": converted_from}


def rosinality_blob(G, drop_clamp: bool) -> dict:
    """``{"g_ema", "latent_avg"}`` of an NVIDIA StyleGAN2 adapter (see ``rosinality_layout``)."""
    from latentnav.generators.rosinality_layout import nvidia_to_rosinality
    from latentnav.generators.stylegan2_nvidia import split_init_kwargs

    arch, init_kwargs = getattr(G, "nvidia_network", (None, None))
    if arch not in ("stylegan2-ada", "stylegan3-stylegan2"):
        raise ConfigError(f"--layout rosinality: only NVIDIA StyleGAN2 networks convert to rosinality's layout, "
                          f"not {G.identity.get('format')}")
    top, mapping, synthesis, _ = split_init_kwargs(arch, init_kwargs)
    config = dict(architecture=synthesis.get("architecture", "skip"), c_dim=top["c_dim"], z_dim=top["z_dim"],
                  w_dim=top["w_dim"], img_channels=top["img_channels"], conv_clamp=synthesis.get("conv_clamp"),
                  img_resolution=top["img_resolution"], mapping_layers=mapping.get("num_layers", 8),
                  mapping_lr=mapping.get("lr_multiplier", 0.01))
    return nvidia_to_rosinality(G.net.state_dict(), config, drop_clamp=drop_clamp)


@torch.no_grad()
def image_difference(A, B, n: int = 2, seed: int = 0) -> float:
    """Largest |A(z) - B(z)| over ``n`` seeded z (classes 0.. for a conditional pair), psi 1, stored noise."""
    z = A.sample(n, seed=seed)
    classes = A.classes_at(range(n))
    return float((A.synthesize(z, classes=classes) - B.synthesize(z, classes=classes)).abs().max())


def convert_generator(source: str | os.PathLike, out: str | os.PathLike, layout: str = "plain",
                      options: dict | None = None, drop_clamp: bool = False) -> str:
    """Write ``source`` as ``layout`` to ``out``, load it back, compare images; the line to print."""
    source = Path(source)
    G = load_generator(source, **(options or {}))
    blob = plain_blob(G, source) if layout == "plain" else rosinality_blob(G, drop_clamp)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(blob, out)
    again = load_generator(out, **{k: v for k, v in (options or {}).items() if k == "classes"})
    difference = image_difference(G, again)
    size = out.stat().st_size / 2**20
    return (f"wrote {out} ({layout} layout, {size:.1f} MiB, sha256 {sha256_of(out)[:12]}): loads as "
            f"{again.describe()['family']}; images differ from the source's by at most {difference:.2e}")

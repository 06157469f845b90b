"""BigGAN's two published PyTorch layouts, recognised from the state dict and loaded behind the contract.

- ``pytorch-pretrained-biggan`` (BigGAN-deep 128/256/512, ``pytorch_model.bin`` + ``config.json``):
  :mod:`latentnav.generators.biggan_deep`;
- BigGAN-PyTorch ``G.pth`` / ``G_ema.pth`` (also GANLatentDiscovery's BigGAN, the same layout):
  :mod:`latentnav.generators.biggan_pytorch`.

Both are class-conditional (``num_classes``; classes are (B,) ids) with z-space latents only.
"""

from __future__ import annotations

from typing import Optional

from latentnav.errors import ConfigError, DataFormatError
from latentnav.generators.base import FrozenGenerator
from latentnav.generators.biggan_deep import (BigGANDeepAdapter, load_biggan_deep, recognise_biggan_deep,
                                              truncated_normal)
from latentnav.generators.biggan_pytorch import (BigGANPyTorchAdapter, load_biggan_pytorch,
                                                 recognise_biggan_pytorch)

__all__ = ["BigGANDeepAdapter", "BigGANPyTorchAdapter", "load_biggan", "load_biggan_deep", "load_biggan_pytorch",
           "recognise_biggan", "recognise_biggan_deep", "recognise_biggan_pytorch", "truncated_normal"]


def recognise_biggan(blob) -> bool:
    """Either BigGAN layout (a cheap look at the state dict's keys)."""
    return recognise_biggan_deep(blob) or recognise_biggan_pytorch(blob)


def load_biggan(blob: dict, identity: Optional[dict] = None, map_location="cpu", config=None,
                **options) -> FrozenGenerator:
    """The adapter for a BigGAN state dict ``blob`` (read weights-only) of either layout.

    ``identity``: ``{"source": path, "sha256": ...}`` (the source's folder is where BigGAN-deep's
    ``config.json`` is looked for); ``config``: BigGAN-deep's config (JSON path or dict), or a
    BigGAN-PyTorch config (its ``BN_eps`` / ``SN_eps`` used, shapes checked); ``options``:
    BigGAN-PyTorch's ``bn_eps``, ``sn_eps``, ``standing_stats`` (none for BigGAN-deep)."""
    if recognise_biggan_deep(blob):
        if options:
            raise ConfigError(f"BigGAN-deep takes no options besides config; got {', '.join(sorted(options))}")
        return load_biggan_deep(blob, identity, map_location, config)
    if recognise_biggan_pytorch(blob):
        return load_biggan_pytorch(blob, identity, map_location, config, **options)
    source = (identity or {}).get("source", "generator")
    raise DataFormatError(f"{source}: not a BigGAN state dict (neither pytorch-pretrained-biggan's "
                          "generator.gen_z nor BigGAN-PyTorch's linear / blocks / output_layer keys)")

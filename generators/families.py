"""The generator families ``load_generator`` recognises besides its own formats, and how each is told apart.

- **Pickles** (not torch's zip format): NVIDIA's StyleGAN2-ADA / StyleGAN3 network pickles and the
  TensorFlow-era StyleGAN2 ones. They are read by ``latentnav.nvidia_pickle`` / ``latentnav.tf_pickle``,
  which record the pickled objects as data and never run the code embedded in them; the network version
  comes from the embedded source's hash (``family_options: {"network_version": ...}`` names it when the
  source is an unpublished revision).
- **State dicts** (torch files read with ``weights_only=True``), by their keys: genforce's PGGAN / StyleGAN /
  StyleGAN2 (``generator`` / ``generator_smooth``), BigGAN-deep (pytorch-pretrained-biggan) and
  BigGAN-PyTorch, and Voynov & Babenko's 1024 px ProgGAN.
- **Converted files** (``latentnav generator convert``): ``{"format": "latentnav.generator/1", "arch": family,
  "family_blob": what that family's loader reads, "family_options": ...}``.

Each family loader takes ``(blob, identity, map_location, **family_options)`` and checks its own options'
names (one line for an unknown one).
"""

from __future__ import annotations

import importlib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from latentnav.errors import ConfigError, DataFormatError

#: The first pickle of torch's legacy (pre-zip) format is this magic number.
_TORCH_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


@dataclass(frozen=True)
class Family:
    """One state-dict family: the module holding its port and the names of its two entry points."""

    name: str
    module: str
    recognise_name: str
    load_name: str
    described: str

    def _entry(self, attribute: str):
        return getattr(importlib.import_module(self.module), attribute)

    def recognises(self, blob: Any) -> bool:
        return bool(self._entry(self.recognise_name)(blob))

    def load(self, blob: Any, identity: dict, map_location, options: dict):
        return self._entry(self.load_name)(blob, identity, map_location, **options)


STATE_DICT_FAMILIES = (
    Family("genforce", "latentnav.generators.genforce", "recognise_genforce", "load_genforce",
           "a genforce PGGAN / StyleGAN / StyleGAN2 checkpoint (generator, generator_smooth)"),
    Family("biggan", "latentnav.generators.biggan", "recognise_biggan", "load_biggan",
           "a BigGAN state dict (pytorch-pretrained-biggan or BigGAN-PyTorch)"),
    Family("proggan", "latentnav.generators.proggan", "recognise_proggan", "load_proggan",
           "Voynov & Babenko's ProgGAN state dict"),
)
KNOWN = ", ".join(f.described for f in STATE_DICT_FAMILIES) + ", an NVIDIA StyleGAN2-ADA / StyleGAN3 or TensorFlow StyleGAN2 pickle"


def recognise(blob: Any) -> Optional[Family]:
    """The state-dict family ``blob`` belongs to, or None."""
    for family in STATE_DICT_FAMILIES:
        if family.recognises(blob):
            return family
    return None


def by_name(name: str) -> Family:
    for family in STATE_DICT_FAMILIES:
        if family.name == name:
            return family
    raise DataFormatError(f"converted generator: unknown family {name!r}; expected one of "
                          + ", ".join([f.name for f in STATE_DICT_FAMILIES] + list(NVIDIA_ARCHS)))


def is_plain_pickle(path: Path) -> bool:
    """A pickle that is not a torch file (neither its zip format nor its legacy one)."""
    if zipfile.is_zipfile(path):
        return False
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) < 2 or head[0] != 0x80:
        return False
    return not (head[2:4] == b"\x8a\x0a" and head[4:14] == _TORCH_LEGACY_MAGIC)


# ------------------------------------------------------------------------------------------ NVIDIA
NVIDIA_ARCHS = ("stylegan2-ada", "stylegan3-stylegan2", "stylegan3")


def load_network_pickle(path: Path, identity: dict, map_location, options: dict):
    """The frozen generator of an NVIDIA (or TensorFlow-era) network pickle at ``path``."""
    from latentnav.nvidia_pickle import generator_record, read_network_pickle, sniff_network_pickle

    options = dict(options)
    version = options.pop("network_version", None)
    if version is not None and version not in NVIDIA_ARCHS:
        raise ConfigError(f"family_options.network_version: expected one of {', '.join(NVIDIA_ARCHS)}, got {version!r}")
    if sniff_network_pickle(path) == "tensorflow":
        from latentnav.generators.tf_stylegan2 import _generator_network, convert_tf_generator
        from latentnav.tf_pickle import read_tf_network_pickle

        if version not in (None, "stylegan2-ada"):
            raise ConfigError(f"{path}: a TensorFlow StyleGAN2 pickle converts to stylegan2-ada, not {version}")
        net = _generator_network(read_tf_network_pickle(path))
        if net is None:
            raise DataFormatError(f"{path}: no TensorFlow generator (Gs or G) in it")
        init_kwargs, state = convert_tf_generator(net, str(path))
        identity = dict(identity, format="TensorFlow StyleGAN2 pickle (converted to the StyleGAN2-ADA layout)")
        return load_nvidia_record(("stylegan2-ada", init_kwargs, state), identity, map_location, "stylegan2-ada",
                                  options, path)
    record = generator_record(read_network_pickle(path), path)
    return load_nvidia_record(record, identity, map_location, version, options, path)


def load_nvidia_record(record: Any, identity: dict, map_location, version: Optional[str], options: dict, path):
    """The adapter of one NVIDIA network record; it keeps ``nvidia_network = (version, init_kwargs)`` so that
    ``latentnav generator convert`` can write it again (with ``adapter.net.state_dict()``)."""
    from latentnav.nvidia_pickle import PersistentObject, require_version

    if isinstance(record, PersistentObject):
        version = version or require_version(record, path)
        record.version = version
    elif isinstance(record, tuple):  # (version, init_kwargs, state dict): a converted or TensorFlow network
        version = record[0]
    else:
        raise DataFormatError(f"{path}: G_ema is a {type(record).__name__}, not a pickled network")
    if version == "stylegan3":
        from latentnav.generators.stylegan3 import load_stylegan3

        if options:
            raise ConfigError(f"family_options: StyleGAN3 takes network_version only; got {', '.join(sorted(options))}")
        if isinstance(record, tuple):  # a converted file's (version, init_kwargs, state dict)
            record = _Record(*record)
        G = load_stylegan3(record, identity, map_location)
        G.nvidia_network = (version, dict(record.init_kwargs))
        return G
    from latentnav.generators.stylegan2_nvidia import load_stylegan2_nvidia

    unknown = sorted(set(options) - {"fused_modconv"})
    if unknown:
        raise ConfigError(f"family_options: NVIDIA StyleGAN2 takes network_version, fused_modconv; got {', '.join(unknown)}")
    G = load_stylegan2_nvidia(record, identity, map_location, **options)
    init_kwargs = record[1] if isinstance(record, tuple) else record.init_kwargs
    G.nvidia_network = (version, dict(init_kwargs))
    return G


@dataclass
class _Record:
    """A network as a converted file stores it, shaped like a pickled record."""

    version: str
    init_kwargs: dict
    state: dict
    class_name: str = "Generator"

    def state_dict(self) -> dict:
        return dict(self.state)


# ------------------------------------------------------------------------------------------ converted files
def load_converted(blob: dict, identity: dict, map_location, options: dict):
    """A file written by ``latentnav generator convert`` (``layout plain``)."""
    arch = blob.get("arch")
    inner = blob.get("family_blob")
    saved = dict(blob.get("family_options") or {})
    saved.update(options)
    identity = dict(identity, converted_from=blob.get("converted_from"))
    if arch in NVIDIA_ARCHS:
        if not isinstance(inner, dict) or not {"init_kwargs", "state_dict"} <= set(inner):
            raise DataFormatError(f"{identity.get('source')}: converted {arch} file lacks init_kwargs / state_dict")
        record = (arch, inner["init_kwargs"], inner["state_dict"])
        saved.pop("network_version", None)
        return load_nvidia_record(record, identity, map_location, arch, saved, identity.get("source"))
    family = by_name(str(arch))
    if not family.recognises(inner):
        raise DataFormatError(f"{identity.get('source')}: converted file says {arch} but its weights are not one")
    return family.load(inner, identity, map_location, saved)

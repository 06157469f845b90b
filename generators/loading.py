"""``load_generator``: one entry point that recognises the format and returns the frozen wrapper."""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Optional

import torch

from latentnav.generators import families
from latentnav.generators.adapters import DCGANAdapter, ModuleAdapter, StyleGAN2Adapter
from latentnav.generators.base import FrozenGenerator
from latentnav.generators.dcgan import DCGANGenerator
from latentnav.generators.stylegan2 import StyleGAN2Config, StyleGAN2Generator, infer_config
from latentnav.assets import bundled, resolve_source
from latentnav.errors import ConfigError, DataFormatError
from latentnav.safe_load import safe_torch_load, sha256_of, strict_load_state_dict
from latentnav.atomic import atomic_torch_save

BUNDLED = bundled("generator")
FORMAT = "latentnav.generator/1"
#: Classes that the port's own training checkpoints pickle besides tensors (its ``args``).
PORT_SAFE_CLASSES = (argparse.Namespace,)
CONVERT_HINT = "convert it once with 'python -m latentnav.generators convert IN OUT' (which trusts it)"


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in archive.namelist())


def _import(class_path: str):
    module_name, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"generator class_path: cannot import {class_path!r}") from None


def _nested(blob: dict, key: str, path: Path) -> dict:
    """``blob["a"]["b"]`` for ``key`` ``"a.b"`` (a state dict nested in a training checkpoint)."""
    node = blob
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            found = ", ".join(sorted(map(str, node))[:8]) if isinstance(node, dict) else type(node).__name__
            raise ConfigError(f"generator state_dict_key: {path} has no {key!r} (at {part!r}: {found})")
        node = node[part]
    if not isinstance(node, dict):
        raise ConfigError(f"generator state_dict_key: {key!r} of {path} is a {type(node).__name__}, not a state dict")
    return node


def load_generator(
    source: str | os.PathLike = "demo",
    *,
    class_path: Optional[str] = None,
    init_args: Optional[dict[str, Any]] = None,
    z_dim: Optional[int] = None,
    resolution: Optional[int] = None,
    trust_pickle: bool = False,
    w_avg_samples: int = 10000,
    state_dict_key: Optional[str] = None,
    strip_prefix: Optional[str] = None,
    classes: Optional[list[int]] = None,
    family_options: Optional[dict[str, Any]] = None,
    compile: Optional[str] = None,
    map_location: str | torch.device = "cpu",
) -> FrozenGenerator:
    """Load a pretrained generator, frozen, behind the :class:`FrozenGenerator` contract.

    ``source`` is ``"demo"`` (the bundled demo GAN) or a file:

    - a checkpoint of rosinality/stylegan2-pytorch (a dict with ``g_ema``; ``latent_avg``
      used when present; the port's training checkpoints with ``args`` load safely too);
    - a TorchScript file mapping z to images (``z_dim``/``resolution`` probed or given);
    - a state dict (or a dict with ``state_dict``) for the ``nn.Module`` named by
      ``class_path`` and built with ``init_args``; ``state_dict_key`` ("g_ema", "state_dict.generator") picks a
      nested one in a training checkpoint and ``strip_prefix`` ("module.") drops a key prefix;
    - a file written by ``python -m latentnav.generators export``.

    Files are read with ``weights_only=True``; ``trust_pickle=True`` lifts that.
    ``classes``: for a class-conditional generator, the class ids samples are drawn from (latent i gets
    ``classes[i % len(classes)]``; default all); refused for an unconditional one.
    ``family_options``: settings of one family's loader (see ``latentnav.generators.families``), e.g.
    ``{"network_version": "stylegan2-ada"}`` for an NVIDIA pickle whose embedded source is not recognised,
    ``{"config": "config.json"}`` for BigGAN-deep, ``{"normalize_latent": false}`` for genforce's PGGAN.
    ``compile``: a ``torch.compile`` backend ("inductor") to run the synthesis through
    (:meth:`FrozenGenerator.compile_synthesis`); a speed switch of this run, not recorded in its files.
    """
    G = _load(source, class_path=class_path, init_args=init_args, z_dim=z_dim, resolution=resolution,
              trust_pickle=trust_pickle, w_avg_samples=w_avg_samples, state_dict_key=state_dict_key,
              strip_prefix=strip_prefix, classes=classes, family_options=family_options, map_location=map_location)
    G.use_classes(classes)
    return G.compile_synthesis(compile) if compile else G


def _load(source, *, class_path, init_args, z_dim, resolution, trust_pickle, w_avg_samples, state_dict_key,
          strip_prefix, classes, family_options, map_location) -> FrozenGenerator:
    path = resolve_source(source, "generator")
    identity = {"source": str(path), "sha256": sha256_of(path)}
    # Recorded so that a command can load the generator exactly as the run that made a file did.
    options = {k: v for k, v in (("class_path", class_path), ("init_args", init_args), ("z_dim", z_dim),
                                 ("resolution", resolution), ("trust_pickle", trust_pickle or None),
                                 ("w_avg_samples", None if w_avg_samples == 10000 else w_avg_samples),
                                 ("state_dict_key", state_dict_key), ("strip_prefix", strip_prefix),
                                 ("classes", list(classes) if classes is not None else None),
                                 ("family_options", dict(family_options) if family_options else None))
               if v is not None}
    if options:
        identity["options"] = options

    if _is_torchscript(path):
        try:
            module = torch.jit.load(str(path), map_location=map_location)
        except RuntimeError as e:
            raise DataFormatError(f"{path}: unreadable TorchScript file ({str(e).splitlines()[0][:120]})") from None
        return ModuleAdapter(module, z_dim, resolution, dict(identity, format="torchscript"), name=str(path))

    if families.is_plain_pickle(path):  # NVIDIA's pickles (and TensorFlow-era ones): read, never executed
        return families.load_network_pickle(path, identity, map_location, dict(family_options or {}))

    blob = safe_torch_load(path, trust_pickle=trust_pickle, allow=PORT_SAFE_CLASSES, map_location=map_location,
                           convert_hint=CONVERT_HINT)
    if not isinstance(blob, dict):
        raise DataFormatError(f"{path}: unknown generator format (a {type(blob).__name__}, expected a dict)")

    if class_path is not None:
        cls = _import(class_path)
        try:
            module = cls(**(init_args or {}))
        except TypeError as e:
            raise ConfigError(f"generator init_args for {class_path}: {e}") from None
        state = _nested(blob, state_dict_key, path) if state_dict_key else blob.get("state_dict", blob)
        if strip_prefix:
            state = {k[len(strip_prefix):] if k.startswith(strip_prefix) else k: v for k, v in state.items()}
        strict_load_state_dict(module, state, str(path))
        return ModuleAdapter(module, z_dim, resolution, dict(identity, format="class_path", class_path=class_path),
                             name=str(path))

    if blob.get("format") == FORMAT and blob.get("arch") == "dcgan":
        net = DCGANGenerator(**blob["config"])
        strict_load_state_dict(net, blob["state_dict"], str(path))
        return DCGANAdapter(net, dict(identity, format="latentnav-dcgan"))
    if blob.get("format") == FORMAT:  # another family written by ``latentnav generator convert``
        return families.load_converted(blob, identity, map_location, dict(family_options or {}))

    if "g_ema" in blob:
        rosinality_options = dict(family_options or {})
        modconv = rosinality_options.pop("modconv", "auto")
        if rosinality_options:
            raise ConfigError(f"family_options: a rosinality StyleGAN2 takes modconv (auto, fused, nonfused); "
                              f"got {', '.join(sorted(rosinality_options))}")
        state = blob["g_ema"]
        config = infer_config(state, str(path))
        net = StyleGAN2Generator(config).set_modconv(modconv)
        strict_load_state_dict(net, state, str(path), what="g_ema")
        latent_avg = blob.get("latent_avg")
        return StyleGAN2Adapter(net.to(map_location), w_avg=latent_avg, w_avg_samples=w_avg_samples,
                                identity=dict(identity, format="rosinality-stylegan2"))

    family = families.recognise(blob)
    if family is not None:
        return family.load(blob, identity, map_location, dict(family_options or {}))
    keys = ", ".join(sorted(map(str, blob))[:5])
    raise DataFormatError(
        f"{path}: unknown generator format (top-level keys: {keys}); expected a rosinality StyleGAN2 "
        f"checkpoint (g_ema), {families.KNOWN}, a TorchScript file, an exported latentnav generator, "
        "or give class_path"
    )


# Recorded options that choose no code and lift no safety flag: applied from the file without the user
# repeating them (a bound keeps a hostile value from making the load itself the attack: w_avg_samples 1e12 would
# sample for days). z_dim / resolution only tell a TorchScript or class_path generator its sizes (probed or
# checked against its output); w_avg_samples is how many samples StyleGAN2's mean w is estimated from: leaving
# it out would silently change the images. Everything else (class_path, init_args, trust_pickle, state_dict_key,
# strip_prefix, and any key not known here) must be repeated by the user.
DESCRIPTIVE_OPTIONS = {"z_dim": (1, 65536), "resolution": (1, 65536), "w_avg_samples": (1, 1_000_000),
                       "classes": (0, 1_000_000), "family_options": (0, 200)}


#: The keyword arguments a user may give ``load_generator`` (``--generator_options``).
LOAD_OPTIONS = frozenset(inspect.signature(load_generator).parameters) - {"source", "map_location"}


def _check_option_names(options: dict, field: str) -> None:
    unknown = sorted(set(options) - LOAD_OPTIONS)
    if unknown:
        raise ConfigError(f"{field}: unknown {', '.join(unknown)}; expected some of {', '.join(sorted(LOAD_OPTIONS))}")


def _descriptive(key: str, value: Any) -> bool:
    low, high = DESCRIPTIVE_OPTIONS.get(key, (None, None))
    if low is None:
        return False
    if key == "family_options":  # a family's numeric / named settings: our own code reads them, none is run
        return isinstance(value, dict) and all(
            isinstance(k, str) and (isinstance(v, (bool, int, float)) or (isinstance(v, str) and len(v) <= high))
            for k, v in value.items())
    if key == "classes":  # a short list of class ids (which classes the file's samples were drawn from)
        return isinstance(value, list) and len(value) <= 10_000 and all(
            isinstance(v, int) and not isinstance(v, bool) and low <= v <= high for v in value)
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _recorded_path(recorded: dict) -> Path:
    """The recorded source as a file here: the path itself, or (a file made on another machine) the bundled
    generator whose sha256 is the recorded one; else one line."""
    source = recorded.get("source", "demo")
    path = BUNDLED.get(str(source), Path(str(source)))
    if path.is_file():
        return path
    if recorded.get("sha256"):
        for candidate in BUNDLED.values():
            if candidate.is_file() and sha256_of(candidate) == recorded["sha256"]:
                return candidate
    return resolve_source(source, "generator", field="generator (recorded in the file; give --generator)")


def load_generator_like(recorded: dict, source: Optional[str | os.PathLike] = None,
                        options: Optional[dict] = None, map_location: str | torch.device = "cpu",
                        what: str = "the directions file", flag: str = "--generator_options") -> FrozenGenerator:
    """Load the generator a file was made with, from its recorded identity (source, sha256, options).

    A file's identity is data that people share: it describes, it does not command. ``source`` (the user's)
    overrides the recorded path (e.g. the checkpoint moved); either file's sha256 is compared with the
    recorded one *before* anything is unpickled or built. The load options are the user's ``options``
    (``--generator_options``) only: recorded options that choose code or lift a safety flag (``class_path``,
    ``init_args``, ``trust_pickle``, ``state_dict_key``, ``strip_prefix``) are refused in one line saying what
    to pass unless the user repeats them (a value of their own wins); small numeric sizes
    (:data:`DESCRIPTIVE_OPTIONS`) are taken from the file. ``what`` names the file in the messages.
    """
    options = dict(options or {})
    _check_option_names(options, flag)
    path = resolve_source(source, "generator", field="--generator") if source else _recorded_path(recorded)
    mine, theirs = sha256_of(path), recorded.get("sha256")
    if theirs and theirs != mine:
        raise ConfigError(f"{what} was made for generator {recorded.get('source')} (sha256 {str(theirs)[:12]}), "
                          f"not {path} (sha256 {mine[:12]})")
    wanted = dict(recorded.get("options") or {})
    missing = {k: v for k, v in wanted.items() if k not in options and not _descriptive(k, v)}
    if missing:
        found = json.dumps(wanted, sort_keys=True)
        suggested = json.dumps(dict(missing, **options), sort_keys=True)
        raise ConfigError(f"{what} records generator options {found}; a directions file cannot choose code to run "
                          f"or lift a safety flag: pass them yourself with {flag} '{suggested}' if you trust them")
    applied = {k: v for k, v in wanted.items() if k not in options}  # only descriptive ones are left here
    G = load_generator(path, map_location=map_location, **applied, **options)
    if theirs and G.identity.get("sha256") != theirs:  # the file changed while it was read
        raise ConfigError(f"generator {path} changed while it was loaded (sha256 {str(G.identity.get('sha256'))[:12]}, "
                          f"expected {str(theirs)[:12]})")
    return G


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: cuda when ``torch.cuda.is_available()``, else cpu; otherwise any torch device (``cuda:1``)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, got {device!r}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {device!r} asked for, but torch.cuda.is_available() is False; use cpu or auto")
    return resolved


def load_generator_on(source: str, options: Optional[dict], device: torch.device):
    """``load_generator(source, **options)`` on ``device``; ``options`` are its keyword arguments
    (class_path, init_args, z_dim, resolution, trust_pickle, w_avg_samples), checked by name."""
    options = dict(options or {})
    _check_option_names(options, "generator options")
    return load_generator(source, map_location=device, **options).to(device)


def export_trained(checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the EMA generator of a GAN training checkpoint as a generator file: a ``DemoGAN``'s in the bundled
    DCGAN format, a ``StyleGAN2GAN``'s as a rosinality ``g_ema`` checkpoint with its ``latent_avg`` (the mean of
    the EMA mapping over 10,000 seeded z), which every StyleGAN2 path loads."""
    blob = safe_torch_load(checkpoint)
    hp = blob.get("hyper_parameters", {}) if isinstance(blob, dict) else {}
    if "z_dim" not in hp or "state_dict" not in blob:
        raise DataFormatError(f"{checkpoint}: not a DemoGAN or StyleGAN2GAN checkpoint (no z_dim hyper-parameter)")
    prefix = "generator_ema."
    state = {k[len(prefix):]: v.clone() for k, v in blob["state_dict"].items() if k.startswith(prefix)}
    trained = {"global_step": blob.get("global_step"), "checkpoint": Path(checkpoint).name}
    if "mapping_layers" in hp:
        config = StyleGAN2Config(size=hp["resolution"], style_dim=hp["z_dim"], n_mlp=hp["mapping_layers"],
                                 channels=tuple(int(c) for c in hp["g_channels"]))
        net = StyleGAN2Generator(config)
        strict_load_state_dict(net, state, str(checkpoint), what="generator_ema")
        with torch.no_grad():
            z = torch.randn(10000, config.style_dim, generator=torch.Generator().manual_seed(0))
            latent_avg = torch.cat([net.mapping(chunk) for chunk in z.split(1000)]).mean(0)
        saved = {"g_ema": state, "latent_avg": latent_avg, "trained": trained}
    else:
        config = {"z_dim": hp["z_dim"], "resolution": hp["resolution"], "channels": list(hp["g_channels"])}
        saved = {"format": FORMAT, "arch": "dcgan", "config": config, "state_dict": state, "trained": trained}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(saved, out)
    return out

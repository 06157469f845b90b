"""Reading weights from files: ``torch.load`` that runs no code unless trusted, strict state-dict
loading with errors that name the keys, and file hashes for identities."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from pathlib import Path
from typing import Iterable

import torch

from latentnav.errors import DataFormatError


# Modules whose functions run commands or code: a pickle that calls them is an attack, not a format.
_CODE_RUNNERS = {"os", "posix", "nt", "subprocess", "builtins", "__builtin__", "sys", "shutil", "socket",
                 "importlib", "runpy", "pty", "code", "codecs"}


def safe_torch_load(path: str | os.PathLike, trust_pickle: bool = False, allow: Iterable[type] = (),
                    map_location="cpu", convert_hint: str = "") -> object:
    """Load ``path`` with ``weights_only=True``, admitting only the classes in ``allow``.

    A file that needs other classes is refused with one line naming the first one and
    ``convert_hint``; ``trust_pickle=True`` loads it with full pickle trust instead.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found")
    if trust_pickle:
        return torch.load(path, map_location=map_location, weights_only=False)
    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", str(e))
        if found is not None and found.group(1).split(".")[0] in _CODE_RUNNERS:
            raise DataFormatError(
                f"{path}: refused, unpickling it would call {found.group(1)} (a hostile or tampered file?); "
                "it was not loaded") from None
        if found is None:
            if "GLOBAL" in str(e):  # a class or function outside the allowed set, name not parsed
                raise DataFormatError(
                    f"{path}: refused by the weights-only loader (the pickle asks for more than tensors and plain "
                    "types); pass trust_pickle=True only if you trust the file") from None
            raise DataFormatError(f"{path}: not a torch checkpoint (unpickling failed)") from None
        raise DataFormatError(
            f"{path}: needs arbitrary code to unpickle ({found.group(1)}); "
            + (convert_hint or "re-save its state dict with plain types")
            + ", or pass trust_pickle=True if you trust the file"
        ) from None
    except (RuntimeError, EOFError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataFormatError(f"{path}: not a torch checkpoint ({first[:120]})") from None
    except (KeyError, IndexError, TypeError, AttributeError, OverflowError, MemoryError, OSError) as e:
        # What torch's legacy reader raises on text or random bytes (a text file gave "KeyError: 101").
        raise DataFormatError(f"{path}: not a torch checkpoint (unreadable: {type(e).__name__})") from None


def read_training_checkpoint(path: str | os.PathLike) -> dict:
    """A Lightning training checkpoint (``--ckpt_path``), read weights-only: a truncated, random,
    text or hostile file, or a torch file that is not a training checkpoint, is one line."""
    blob = safe_torch_load(path)
    if not isinstance(blob, dict) or not isinstance(blob.get("state_dict"), dict) or "global_step" not in blob:
        raise DataFormatError(f"{path}: not a Lightning training checkpoint (no state_dict / global_step); "
                              "pass a .ckpt written by latentnav fit")
    return blob


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def strict_load_state_dict(module: torch.nn.Module, state_dict: dict, source: str, what: str = "state dict") -> None:
    """``load_state_dict(strict=True)`` whose failure is one line naming the first odd keys."""
    own = module.state_dict()
    unexpected = [k for k in state_dict if k not in own]
    missing = [k for k in own if k not in state_dict]
    if unexpected or missing:
        raise DataFormatError(
            f"{source}: {what} does not fit {type(module).__name__}; unexpected keys: "
            f"{', '.join(unexpected[:3]) or 'none'}; missing keys: {', '.join(missing[:3]) or 'none'}"
        )
    wrong = [k for k, v in state_dict.items() if tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        k = wrong[0]
        raise DataFormatError(f"{source}: {what} key {k} has shape {tuple(state_dict[k].shape)}, expected {tuple(own[k].shape)}")
    module.load_state_dict(state_dict)

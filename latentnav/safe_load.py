"""``torch.load`` that never runs code from a file unless the user says they trust it."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Iterable

import torch

from latentnav.errors import DataFormatError


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
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found is None:
            raise DataFormatError(f"{path}: not a torch checkpoint (unpickling failed)") from None
        raise DataFormatError(
            f"{path}: needs arbitrary code to unpickle ({found.group(1)}); "
            + (convert_hint or "re-save its state dict with plain types")
            + ", or pass trust_pickle=True if you trust the file"
        ) from None
    except (RuntimeError, EOFError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataFormatError(f"{path}: not a torch checkpoint ({first[:120]})") from None

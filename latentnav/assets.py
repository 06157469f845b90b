"""Bundled names -> files, in one place: ``"demo"`` is the shipped generator or classifier.

The files ship inside the packages (package data of ``latentnav.generators`` and
``latentnav.lightning_modules``, ``pretrained/``); their folders are found without importing those
packages (this is the foundation layer).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from latentnav.errors import DataFormatError

_BUNDLED = {
    "generator": {"demo": ("latentnav.generators", "pretrained/demo_generator.pt")},
    "annotator": {"demo": ("latentnav.lightning_modules", "pretrained/demo_classifier.pt"),
                  # the held-out judge: another backbone, trained on faces rendered with another seed
                  "demo_judge": ("latentnav.lightning_modules", "pretrained/demo_judge.pt")},
    # reads face position and size, skin tone and background back (lightning_modules/nuisance_regressor.py)
    "nuisance": {"demo": ("latentnav.lightning_modules", "pretrained/demo_nuisance.pt")},
}


def bundled(kind: str) -> dict[str, Path]:
    """``{name: file}`` of the bundled ``kind`` (``generator`` or ``annotator``)."""
    out = {}
    for name, (package, relative) in _BUNDLED[kind].items():
        spec = importlib.util.find_spec(package)
        out[name] = Path(list(spec.submodule_search_locations)[0]).resolve() / relative
    return out


def resolve_source(source: str | os.PathLike, kind: str, field: str | None = None) -> Path:
    """A bundled name or a path -> an existing file; otherwise one line naming ``field`` (or the path)."""
    names = bundled(kind)
    path = names.get(str(source), Path(source))
    if not path.is_file():
        hint = "" if str(source) in names else f" (bundled names: {', '.join(names)})"
        where = f"{field}: " if field else ""
        raise DataFormatError(f"{where}{path}: {kind} file not found{hint}")
    return path

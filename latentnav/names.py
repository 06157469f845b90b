"""Names read from data (attribute, direction and method names) -> safe file stems, in one place.

A directions file is data that people share; the names in it must never choose where a command writes.
:func:`safe_stem` turns one name into a stem that is a single file name inside the output folder:

- path separators (``/``, ``\\``), control characters and the characters other systems refuse in file
  names (``: * ? " < > |``) become ``_``; a run of dots (``..``) becomes ``_``; a leading dot (a hidden file)
  becomes ``_``; trailing dots and spaces go;
- at most :data:`MAX_STEM` characters (and UTF-8 bytes): a longer name is cut and ends in ``-`` and 8 hex
  digits of its sha1, so that two long names stay two files;
- an empty name (or one of spaces) is refused in one line.

Ordinary names (``Smiling``, ``sefa03``, ``Black_Hair``, ``method A``) come back unchanged, and
``safe_stem(safe_stem(x)) == safe_stem(x)``.

:func:`unique_stems` makes the stems of a list of names unique, case-insensitively (a case-insensitive file
system would otherwise write two names into one file): the same name twice is refused in one line naming
it (``on_duplicate="refuse"``) or numbered (``"number"``: ``x``, ``x-2``); two different names whose stems
meet (``a/b`` and ``a_b``) are told apart by a ``-2``, ``-3`` suffix.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Iterable

from latentnav.errors import ConfigError

MAX_STEM = 100  # characters (and UTF-8 bytes) of a stem, before its suffix (".png", "_scores.tsv")
_REFUSED = re.compile(r'[/\\:*?"<>|]')
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}


def _short_hash(name: str) -> str:
    return hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _cut(stem: str, limit: int) -> str:
    """``stem`` cut to at most ``limit`` characters and ``limit`` UTF-8 bytes (whole characters)."""
    stem = stem[:limit]
    while len(stem.encode("utf-8", "surrogatepass")) > limit:
        stem = stem[:-1]
    return stem


def _fits(stem: str, limit: int) -> bool:
    return len(stem) <= limit and len(stem.encode("utf-8", "surrogatepass")) <= limit


def safe_stem(name: object, what: str = "name", limit: int = MAX_STEM) -> str:
    """``name`` as a file stem that stays inside the output folder (see the module docstring); an empty
    name is one :class:`ConfigError` line naming ``what`` (e.g. ``"directions.npz: direction name"``)."""
    text = unicodedata.normalize("NFC", str(name))
    text = "".join("_" if unicodedata.category(c).startswith("C") or _REFUSED.match(c) else c for c in text)
    text = re.sub(r"\.{2,}", "_", text)
    text = text.rstrip(". ")
    if text.startswith("."):
        text = "_" + text[1:]
    if not text.strip():
        problem = "is empty" if not str(name).strip() else "has nothing a file name can keep"
        raise ConfigError(f"{what}: {str(name)!r} {problem}; it cannot name a file (rename it)")
    if text.split(".")[0].upper() in _WINDOWS_DEVICES:
        text = "_" + text
    if not _fits(text, limit):
        text = _cut(text, limit - 9).rstrip(". ") + "-" + _short_hash(str(name))
    return text


def unique_stems(names: Iterable[object], what: str = "names", on_duplicate: str = "refuse",
                 limit: int = MAX_STEM) -> list[str]:
    """One safe stem per name, no two alike (case-insensitively). The same name twice: one line naming
    it and ``what`` (``on_duplicate="refuse"``), or a numbered stem (``"number"``); different names whose
    stems meet: the later ones get ``-2``, ``-3``, ..."""
    if on_duplicate not in ("refuse", "number"):
        raise ValueError(f"on_duplicate: expected 'refuse' or 'number', got {on_duplicate!r}")
    names = [str(n) for n in names]
    if on_duplicate == "refuse":
        seen, duplicated = set(), []
        for n in names:
            if n in seen and n not in duplicated:
                duplicated.append(n)
            seen.add(n)
        if duplicated:
            listed = ", ".join(repr(n) for n in duplicated)
            raise ConfigError(f"{what}: {listed} given more than once; each name must be unique (one file each)")
    stems, taken = [], set()
    for n in names:
        stem = safe_stem(n, what, limit)
        candidate, k = stem, 1
        while candidate.casefold() in taken:
            k += 1
            suffix = f"-{k}"
            candidate = _cut(stem, limit - len(suffix)) + suffix
        taken.add(candidate.casefold())
        stems.append(candidate)
    return stems

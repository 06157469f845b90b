"""The ``directions.npz`` format: what every directions method writes and every command reads.

Arrays: ``directions`` (K, d) float32 rows, ``names`` (K,) str, ``method`` str, ``latent_space`` str,
``generator`` (the generator's identity as JSON: source, sha256, class, load options), optionally
``seconds`` (the method's compute time) and extra arrays (e.g. ``eigenvalues`` (K,)). Read with
``allow_pickle=False``.

The names are data: a command that picks a row by name goes through :func:`row_of` (a name on two rows is
one line naming the file and the rows, never a silent pick of the first), and a name only becomes a file
name through ``latentnav.names`` (``safe_stem``). The recorded ``generator`` options are descriptive:
``load_generator_like`` never runs what they name unless the user repeats them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from latentnav.atomic import atomic_write
from latentnav.errors import ConfigError, DataFormatError


def check_rows(directions: torch.Tensor, where: str) -> None:
    """Every row finite and non-zero: a NaN row renders black frames, a zero row an edit that does nothing."""
    d = directions.detach().float()
    bad = (~torch.isfinite(d).all(1)).nonzero().flatten().tolist()
    if bad:
        raise DataFormatError(f"{where}: direction row(s) {bad[:8]} are not finite (NaN or inf)")
    zero = (d.norm(dim=1) <= 1e-12).nonzero().flatten().tolist()
    if zero:
        raise DataFormatError(f"{where}: direction row(s) {zero[:8]} are zero (an edit along them does nothing)")


def write_directions(path: Path, directions: torch.Tensor, names: list[str], method: str, space: str, identity: dict,
                     seconds: Optional[float] = None, **extra: np.ndarray) -> Path:
    """Write ``path`` atomically (a temporary file renamed over it) and return it; non-finite or zero rows
    are refused (a diverged run must not overwrite good directions)."""
    path = Path(path)
    check_rows(directions, f"{path}: not written")
    path.parent.mkdir(parents=True, exist_ok=True)
    if seconds is not None:
        extra["seconds"] = np.array(float(seconds))
    return atomic_write(path, lambda f: np.savez(
        f, directions=directions.detach().cpu().float().numpy(), names=np.array(names), method=np.array(method),
        latent_space=np.array(space), generator=np.array(json.dumps(identity, sort_keys=True)),
        **{k: np.asarray(v) for k, v in extra.items()}))


def read_directions(path: str | Path) -> dict:
    """Load a ``directions.npz``; a missing or malformed file is one clear error."""
    if not Path(path).is_file():
        raise DataFormatError(f"{path}: directions file not found")
    try:
        with np.load(path, allow_pickle=False) as blob:
            found = {"directions": torch.from_numpy(blob["directions"]), "names": [str(n) for n in blob["names"]],
                     "method": str(blob["method"]), "latent_space": str(blob["latent_space"]),
                     "generator": json.loads(str(blob["generator"]))}
            found.update({k: blob[k] for k in blob.files if k not in found})
    except (ValueError, OSError, KeyError) as e:
        raise DataFormatError(f"{path}: not a directions.npz ({type(e).__name__}: {str(e)[:100]})") from None
    d = found["directions"]
    if d.ndim != 2 or len(found["names"]) != len(d):
        raise DataFormatError(f"{path}: expected directions (K, d) with K names, got shape {tuple(d.shape)} "
                              f"and {len(found['names'])} names")
    check_rows(d, str(path))
    return found


def duplicated_names(names: list[str]) -> dict[str, list[int]]:
    """{name: its rows} for every name on more than one row."""
    rows: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        rows.setdefault(n, []).append(i)
    return {n: r for n, r in rows.items() if len(r) > 1}


def row_of(found: dict, name: str, where: str, field: str = "attribute") -> int:
    """The row of the direction named ``name`` in a read directions file (``where``: its path, for the
    message); a name that is missing, or on several rows (which one did the user mean?), is one line."""
    names = list(found["names"])
    rows = [i for i, n in enumerate(names) if n == name]
    if not rows:
        raise ConfigError(f"{field} {name!r} is not in the directions file; it has {' '.join(names)}")
    if len(rows) > 1:
        raise DataFormatError(f"{where}: direction name {name!r} is on rows {rows}; a name must pick one row "
                              "(rename the duplicates)")
    return rows[0]


# The latents file of a projection (``latentnav project``), read by ``latentnav edit --latents``.
LATENTS_FORMAT = "latentnav-latents/1"


def read_latents(path: str | Path, generator_identity: Optional[dict] = None, space: Optional[str] = None) -> dict:
    """``{"latents": (N, ...) float32, "space", "generator": identity, "files": [...], "noise": per-layer
    (N, 1, r, r) maps or None}`` (None where unknown) from
    a projection's ``latents.pt`` or a plain saved tensor (weights-only). With a ``generator_identity`` a
    file recorded for another generator (sha256) is one line; with ``space`` a file of another space is."""
    from latentnav.safe_load import safe_torch_load

    found = safe_torch_load(path)
    if isinstance(found, torch.Tensor):
        return {"latents": found.float(), "space": None, "generator": None, "files": [], "noise": None}
    if not isinstance(found, dict) or found.get("format") != LATENTS_FORMAT or not isinstance(found.get("latents"), torch.Tensor):
        raise DataFormatError(f"{path}: expected a tensor of latents or a latentnav projection's latents.pt")
    theirs = (found.get("generator") or {}).get("sha256")
    mine = (generator_identity or {}).get("sha256")
    if theirs and mine and theirs != mine:
        raise ConfigError(f"{path}: latents projected with generator {found['generator'].get('source')} (sha256 "
                          f"{theirs[:12]}), not {generator_identity.get('source')} (sha256 {mine[:12]})")
    if space is not None and found.get("space") not in (None, space):
        raise ConfigError(f"{path}: latents are in {found['space']} space, the directions in {space} space")
    noise = found.get("noise")
    if noise is not None and (not isinstance(noise, list) or any(
            not isinstance(n, torch.Tensor) or n.ndim != 4 or len(n) != len(found["latents"]) for n in noise)):
        raise DataFormatError(f"{path}: 'noise' must be a list of (N, 1, r, r) maps, one row per latent")
    return {"latents": found["latents"].float(), "space": found.get("space"), "generator": found.get("generator"),
            "files": list(found.get("files") or []), "noise": noise}

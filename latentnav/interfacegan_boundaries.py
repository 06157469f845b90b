"""InterFaceGAN's published boundaries (``boundaries/*.npy``) as a latentnav ``directions.npz``.

InterFaceGAN (Shen et al., CVPR 2020) publishes one ``.npy`` per attribute and model: a (1, d) float
array, the unit normal of a linear SVM's separating hyperplane in the generator's latent space, e.g.
``pggan_celebahq_smile_boundary.npy`` (z of PGGAN CelebA-HQ) or ``stylegan_ffhq_age_w_boundary.npy``
(w of StyleGAN FFHQ: the ``_w_`` in the name marks w-space boundaries; the others are z-space, and
``_c_`` ones are conditional boundaries, projected orthogonal to other attributes).
:func:`import_boundaries` writes them as one directions file (one row per file, as published, float32)
so that they can be edited with and compared with the other methods on the same yardstick. Their
generators load with ``latentnav.generators.genforce``: InterFaceGAN's own ``.pth`` files, or genforce's
model zoo, which holds the same networks (converted from the same official pickles). InterFaceGAN
sampled PGGAN's and StyleGAN's z on the sphere of radius sqrt(d) (that loader's ``normalize_latent``).

Files are read with ``allow_pickle=False``; a file that is not a ``.npy``, not readable, not (1, d) (or
(d,)) floating point, not finite or zero, is one line naming it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from latentnav.directions_file import write_directions
from latentnav.errors import ConfigError, DataFormatError
from latentnav.names import unique_stems

METHOD = "InterFaceGAN boundaries"
SPACES = ("z", "w")


def boundary_space(path: str | os.PathLike) -> str:
    """InterFaceGAN's naming: ``w`` for a file whose stem has ``_w_`` (or ends in ``_w``), else ``z``."""
    stem = Path(path).stem
    return "w" if "_w_" in f"{stem}_" else "z"


def read_boundary(path: str | os.PathLike) -> np.ndarray:
    """One boundary as a (d,) float32 vector; anything else is one line naming the file."""
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise DataFormatError(f"{path}: not a .npy boundary file (InterFaceGAN's boundaries are .npy arrays)")
    if not path.is_file():
        raise DataFormatError(f"{path}: boundary file not found")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataFormatError(f"{path}: not a readable .npy array ({type(e).__name__}: {str(e)[:80]})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind != "f":
        kind = getattr(array, "dtype", type(array).__name__)
        raise DataFormatError(f"{path}: expected a floating-point (1, d) boundary, got {kind}")
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 1 or array.shape[0] < 1:
        raise DataFormatError(f"{path}: expected a (1, d) boundary, got shape {tuple(np.shape(array))}")
    if not np.isfinite(array).all():
        raise DataFormatError(f"{path}: the boundary holds NaN or inf")
    if not np.abs(array).max() > 0:
        raise DataFormatError(f"{path}: the boundary is all zeros")
    return array.astype(np.float32)


def import_boundaries(paths: Sequence[str | os.PathLike], generator_identity: dict, space: Optional[str] = None,
                      out: str | os.PathLike = "runs/directions/interfacegan.npz") -> Path:
    """Write InterFaceGAN boundary files as one ``directions.npz`` at ``out`` (atomically) and return it.

    Each ``.npy`` becomes one direction named after its file stem (made safe with
    :func:`latentnav.names.safe_stem`; two files with one stem are refused). ``space``: ``"z"`` or ``"w"``;
    None takes it from the file names (``_w_``: w, else z). Every file must be of that space and of one
    size. ``generator_identity``: the identity of the generator the boundaries belong to (recorded, as
    every directions file records it; e.g. ``G.identity`` of the genforce model)."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ConfigError("boundaries: no .npy files given")
    if space is not None and space not in SPACES:
        raise ConfigError(f"space: InterFaceGAN's boundaries are z or w vectors; expected z or w, got {space!r}")
    if not isinstance(generator_identity, dict):
        raise ConfigError(f"generator_identity: expected a dict (the generator's identity), got "
                          f"{type(generator_identity).__name__}")
    vectors = [read_boundary(p) for p in paths]
    wanted = space or boundary_space(paths[0])
    for p in paths:
        named = boundary_space(p)
        if named != wanted:
            why = f"the space given is {space}" if space else f"{paths[0].name} is a {wanted}-space boundary"
            raise ConfigError(f"{p}: its name marks a {named}-space boundary, but {why}; import z and w "
                              "boundaries into separate files")
    size = vectors[0].shape[0]
    for p, v in zip(paths, vectors):
        if v.shape[0] != size:
            raise DataFormatError(f"{p}: the boundary has {v.shape[0]} values, {paths[0].name} has {size}; "
                                  "boundaries of one file must share a latent size")
    names = unique_stems([p.stem for p in paths], what="InterFaceGAN boundary names")
    return write_directions(Path(out), torch.from_numpy(np.stack(vectors)), names, METHOD, wanted,
                            dict(generator_identity), source_files=np.array([p.name for p in paths]),
                            norms=np.array([float(np.linalg.norm(v)) for v in vectors], dtype=np.float32))

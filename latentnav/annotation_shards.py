"""The annotated-latents store: fixed-size shards of (latents, logits) and a manifest.

A store is one folder::

    manifest.json          key (generator and classifier sha256, space, seed, sizes), attributes,
                           and per shard: file, first index, count, sha256
    shard_00000.pt         {"format", "key", "shard", "start", "latents" (n, *latent_shape) float32,
    shard_00001.pt          "logits" (n, K) float32, "attributes"}; latent i of the store is
    ...                     latent i of the stream (seed, i): see ``FrozenGenerator.latents_at``

Shard s holds latents ``[s * shard_size, min((s + 1) * shard_size, num))``. Every file is
written atomically (``latentnav.atomic``: temporary name, fsync, rename), so a killed run leaves
whole shards or none; a re-run recomputes only the shards that are missing or do not match the
key. An unreadable manifest or shard makes the store unfinished (re-annotated), never an error
that blocks later runs. Writers of one store take turns on ``<store>/.lock`` (``LOCK``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from latentnav.atomic import atomic_torch_save, atomic_write_text
from latentnav.errors import DataFormatError
from latentnav.safe_load import sha256_of

FORMAT = "latentnav.annotation_shards/2"  # 2: latents from latentnav.generators.base.latent_rng
MANIFEST = "manifest.json"
LOCK = ".lock"  # flock'ed by whoever writes the store (latentnav.atomic.file_lock)


def make_key(generator_sha256: str, annotator_sha256: str, space: str, seed: int, num: int, shard_size: int) -> dict:
    """What a store was made from: two stores with equal keys hold the same numbers."""
    return {"format": FORMAT, "generator_sha256": generator_sha256, "annotator_sha256": annotator_sha256,
            "space": space, "seed": int(seed), "num": int(num), "shard_size": int(shard_size)}


def num_shards(num: int, shard_size: int) -> int:
    return -(-int(num) // int(shard_size))


def shard_range(shard: int, num: int, shard_size: int) -> range:
    """Latent indices of ``shard``."""
    return range(shard * shard_size, min((shard + 1) * shard_size, num))


def shard_path(folder: Path, shard: int) -> Path:
    return Path(folder) / f"shard_{shard:05d}.pt"


def write_shard(folder: Path, key: dict, shard: int, latents: torch.Tensor, logits: torch.Tensor,
                attributes: list[str]) -> Path:
    expected = len(shard_range(shard, key["num"], key["shard_size"]))
    if len(latents) != expected or len(logits) != expected:
        raise ValueError(f"shard {shard}: expected {expected} rows, got {len(latents)} latents and {len(logits)} logits")
    path = shard_path(folder, shard)
    atomic_torch_save({"format": FORMAT, "key": key, "shard": shard, "start": shard * key["shard_size"],
                       "latents": latents.detach().float().cpu().contiguous(),
                       "logits": logits.detach().float().cpu().contiguous(), "attributes": list(attributes)}, path)
    return path


def load_shard(path: Path, mmap: bool = True) -> dict:
    """A shard's dict; tensors memory-mapped (read from disk on use) unless ``mmap=False``."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # truncated, not a zip file, not weights-only: all mean "not a valid shard"
        raise DataFormatError(f"{path}: not a readable annotation shard ({type(e).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise DataFormatError(f"{path}: not an annotation shard (format {FORMAT} expected)")
    return blob


def valid_shard(folder: Path, key: dict, shard: int, sha256: Optional[str] = None) -> bool:
    """Is shard ``shard`` complete and made from ``key``? With ``sha256`` (from the manifest) the
    file's checksum decides; without, the file is opened and its key, rows and values checked."""
    path = shard_path(folder, shard)
    if not path.is_file():
        return False
    if sha256 is not None:
        return sha256_of(path) == sha256
    try:
        blob = load_shard(path)
    except DataFormatError:
        return False
    n = len(shard_range(shard, key["num"], key["shard_size"]))
    return (blob.get("key") == key and blob.get("shard") == shard and len(blob["latents"]) == n
            and len(blob["logits"]) == n and bool(torch.isfinite(blob["logits"]).all()))


def read_manifest(folder: Path) -> Optional[dict]:
    """The manifest of ``folder``; None when there is none; DataFormatError when it is unreadable."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):  # zero bytes, truncated, garbage
        raise DataFormatError(f"{path}: not a JSON manifest") from None
    if not isinstance(manifest, dict):
        raise DataFormatError(f"{path}: not a JSON manifest (an object expected)")
    return manifest


def store_finished(folder: Path, key: dict) -> bool:
    """Is ``folder`` a finished store made from ``key``? Anything unreadable means no (re-annotate).

    Cheap enough for every run: the manifest is parsed and every shard opened memory-mapped (a
    truncated or garbage file does not open) and its key and row count compared; the checksums
    are verified only when the store is (re-)annotated (``complete_shards``).
    """
    try:
        manifest = read_manifest(folder)
        if manifest is None or manifest.get("key") != key:
            return False
        for s in range(num_shards(key["num"], key["shard_size"])):
            blob = load_shard(shard_path(folder, s))
            if blob.get("key") != key or len(blob["logits"]) != len(shard_range(s, key["num"], key["shard_size"])):
                return False
    except (DataFormatError, KeyError, TypeError):
        return False
    return True


def complete_shards(folder: Path, key: dict) -> set[int]:
    """Shards of ``folder`` that are complete and made from ``key`` (the ones a re-run skips)."""
    try:
        manifest = read_manifest(folder)
        listed = {}
        if manifest is not None and manifest.get("key") == key:
            listed = {s["shard"]: s["sha256"] for s in manifest.get("shards", [])}
    except (DataFormatError, KeyError, TypeError):  # unreadable manifest: each shard is opened and checked instead
        listed = {}
    return {s for s in range(num_shards(key["num"], key["shard_size"])) if valid_shard(folder, key, s, listed.get(s))}


def write_manifest(folder: Path, key: dict, attributes: list[str], identity: dict) -> dict:
    """Check that every shard is there and write ``manifest.json`` listing them with checksums."""
    shards = []
    for s in range(num_shards(key["num"], key["shard_size"])):
        path = shard_path(folder, s)
        if not valid_shard(folder, key, s):
            raise DataFormatError(f"{path}: missing or incomplete; re-run the annotation to finish it")
        r = shard_range(s, key["num"], key["shard_size"])
        shards.append({"shard": s, "file": path.name, "start": r.start, "count": len(r), "sha256": sha256_of(path)})
    manifest = {"key": key, "attributes": list(attributes), "generator": identity, "shards": shards}
    atomic_write_text(Path(folder) / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def check_manifest(folder: Path, key: dict, attributes: Optional[list[str]] = None) -> dict:
    """The manifest of a finished store made from ``key``; otherwise one line saying what differs."""
    manifest = read_manifest(folder)
    where = Path(folder) / MANIFEST
    if manifest is None:
        raise DataFormatError(f"{where}: not found; annotate first (train.py predict --config configs/annotate/...)")
    theirs = manifest.get("key") if isinstance(manifest.get("key"), dict) else {}
    for field in ("format", "generator_sha256", "annotator_sha256", "space", "seed", "num", "shard_size"):
        if theirs.get(field) != key.get(field):
            raise DataFormatError(f"{where}: made with {field} {str(theirs.get(field))[:16]!s}, "
                                  f"expected {str(key.get(field))[:16]!s}")
    if attributes is not None and list(manifest.get("attributes", [])) != list(attributes):
        raise DataFormatError(f"{where}: made with attributes {' '.join(manifest.get('attributes', []))}, "
                              f"expected {' '.join(attributes)}")
    return manifest


class ShardedLatents(torch.utils.data.Dataset):
    """Rows ``(latent (d,), target (K',))`` of a finished store, read lazily from memory-mapped shards.

    ``columns`` picks and orders the classifier's attributes; ``probabilities=True`` applies a
    sigmoid to the logits. Only the pages a batch touches are read, so a store of 10 M latents
    never has to fit in memory. ``__getitems__`` serves a whole batch with one gather per shard.
    """

    def __init__(self, folder: Path, manifest: dict, columns: list[int], probabilities: bool) -> None:
        self.folder = Path(folder)
        self.shard_size, self.num = manifest["key"]["shard_size"], manifest["key"]["num"]
        self.columns, self.probabilities = torch.tensor(columns), probabilities
        self._shards: dict[int, dict] = {}

    def __len__(self) -> int:
        return self.num

    def _shard(self, s: int) -> dict:
        if s not in self._shards:  # opened on first use (also in each DataLoader worker)
            self._shards[s] = load_shard(shard_path(self.folder, s))
        return self._shards[s]

    def _rows(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shard_of = indices // self.shard_size
        out_z, out_y = None, None
        for s in shard_of.unique().tolist():
            where = torch.nonzero(shard_of == s).flatten()
            blob = self._shard(s)
            local = indices[where] - s * self.shard_size
            z = blob["latents"][local].flatten(1)
            y = blob["logits"][local][:, self.columns]
            if out_z is None:
                out_z = z.new_empty(len(indices), z.shape[1])
                out_y = y.new_empty(len(indices), y.shape[1])
            out_z[where], out_y[where] = z, y
        # float32 sigmoid differs by an ulp between torch's vectorised and scalar paths, i.e. with a row's
        # place in the batch; in float64, rounded to float32, every row gets the same value in any batch.
        return out_z, (torch.sigmoid(out_y.double()).to(out_y.dtype) if self.probabilities else out_y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < self.num:
            raise IndexError(i)
        z, y = self._rows(torch.tensor([i]))
        return z[0], y[0]

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        z, y = self._rows(torch.as_tensor(indices))
        return list(zip(z, y))

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every row at once (loads the whole store: for small stores and tests)."""
        return self._rows(torch.arange(self.num))

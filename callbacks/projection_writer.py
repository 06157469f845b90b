"""Writes a projection's latents, reconstructions and scores; a killed projection resumes where it stopped."""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter

from latentnav.atomic import atomic_torch_save, atomic_write, atomic_write_text, remove_orphans
from latentnav.directions_file import LATENTS_FORMAT

_KEYS = ("rows", "latents", "reconstructions", "psnr", "ssim")


class ProjectionWriter(BasePredictionWriter):
    """``<out>/latents.pt`` (``{"format", "latents" (N, *shape), "space", "generator": identity, "files"}``, and
    ``"noise"``: per-layer (N, 1, r, r) maps where the projection optimised them,
    read by ``latentnav edit --latents``), ``<out>/reconstructions/<n>_<name>.png`` (input | reconstruction)
    and ``<out>/projection.tsv`` (file, PSNR dB, SSIM).

    Every batch's results are saved at once, atomically, by the rank that made them, as
    ``<out>/.parts/b<first row>-<rank>.pt``, under ``<out>/.parts/key.json``: the inputs (path, size,
    modification time), the generator and the projection's settings. A projection started again with the
    same key skips the images already in a part (:attr:`done`, read in ``setup`` on every rank alike, so the
    data module can leave them out); another key discards the parts. At the end rank 0 puts every part in
    file order, writes the outputs and removes ``.parts``.

    Args:
        out_dir: output folder (shared by every node).
        files: the input files, in index order.
        space, generator_identity: recorded with the latents (the edit command checks them).
        crop_size: the crop the inputs were read with (for the input half of each pair).
        settings: what else decides a result (``Projection.settings()``, an encoder's identity...).
    """

    def __init__(self, out_dir: str | Path, files: list, space: str, generator_identity: dict,
                 crop_size: int | None = None, settings: dict | None = None) -> None:
        super().__init__(write_interval="batch")
        self.out_dir, self.files, self.space, self.identity = Path(out_dir), [Path(f) for f in files], space, generator_identity
        self.crop_size = crop_size
        self.key = self._key(settings or {})
        self.done: set[int] = set()
        self.result: dict = {}

    @property
    def parts_dir(self) -> Path:
        return self.out_dir / ".parts"

    def _key(self, settings: dict) -> str:
        inputs = []
        for f in self.files:
            st = f.stat()
            inputs.append([str(f.resolve()), st.st_size, st.st_mtime_ns])
        blob = json.dumps({"inputs": inputs, "crop_size": self.crop_size, "space": self.space,
                           "generator": self.identity.get("sha256"), "settings": settings}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _parts(self) -> list[Path]:
        return sorted(self.parts_dir.glob("b*.pt"))

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        warnings.filterwarnings("ignore", message=".*Couldn't infer the batch indices.*")
        warnings.filterwarnings("ignore", message=".*`IterableDataset` has `__len__` defined.*")
        trainer.predict_loop.return_predictions = False
        folder, key_file = self.parts_dir, self.parts_dir / "key.json"
        if trainer.is_global_zero:
            try:
                same = json.loads(key_file.read_text()).get("key") == self.key
            except (OSError, ValueError, AttributeError):
                same = False
            if not same:  # other inputs or settings (or nothing yet): start afresh
                shutil.rmtree(folder, ignore_errors=True)
                atomic_write_text(key_file, json.dumps({"key": self.key}) + "\n")
            remove_orphans(folder)
        trainer.strategy.barrier("projection_parts_checked")
        self.done = set()
        for part in self._parts():  # the rows only: the tensors stay on disk (memory-mapped)
            self.done.update(torch.load(part, weights_only=True, mmap=True)["rows"].tolist())
        # No rank writes a part before every rank has listed them, so all slice the same remaining rows.
        trainer.strategy.barrier("projection_parts_listed")
        if self.done and trainer.is_global_zero:
            print(f"latentnav: resuming a projection: {len(self.done)} of {len(self.files)} image(s) already done "
                  f"({folder})", flush=True)

    def write_on_batch_end(self, trainer, pl_module, prediction: dict, batch_indices, batch, batch_idx: int,
                           dataloader_idx: int = 0) -> None:
        part = {k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in prediction.items()
                if k in _KEYS}
        for layer, n in enumerate(prediction.get("noise") or []):  # StyleGAN2's optimised maps, (b, 1, r, r) each
            part[f"noise{layer}"] = n
        first = int(part["rows"].min())
        atomic_torch_save(part, self.parts_dir / f"b{first:08d}-{trainer.global_rank}.pt")

    def finish(self, trainer: pl.Trainer) -> None:
        """Gather the parts (rank 0) and write the outputs; every rank calls it once the loop is over."""
        trainer.strategy.barrier("projection_writer")
        if trainer.is_global_zero:
            found = [torch.load(p, weights_only=True) for p in self._parts()]
            merged = {k: torch.cat([f[k] for f in found]) for k in found[0]}
            order = merged["rows"].argsort()
            self.result = {k: v[order] for k, v in merged.items()}
            if self.result["rows"].tolist() != list(range(len(self.files))):
                raise RuntimeError(f"projection parts in {self.parts_dir} do not cover the {len(self.files)} images "
                                   "exactly once")
            self.write(trainer)
            shutil.rmtree(self.parts_dir, ignore_errors=True)
        trainer.strategy.barrier("projection_written")

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.finish(trainer)

    def write(self, trainer: pl.Trainer) -> None:
        from PIL import Image

        from latentnav.images import load_square_image, to_uint8

        r = self.result
        layers = sorted((k for k in r if k.startswith("noise")), key=lambda k: int(k[5:]))
        atomic_torch_save({"format": LATENTS_FORMAT, "latents": r["latents"].contiguous(), "space": self.space,
                           "generator": self.identity, "files": [str(f) for f in self.files],
                           **({"noise": [r[k].contiguous() for k in layers]} if layers else {})},
                          self.out_dir / "latents.pt")
        size = r["reconstructions"].shape[1]
        for n, f in enumerate(self.files):
            pair = np.concatenate([to_uint8(load_square_image(f, size, self.crop_size)),
                                   r["reconstructions"][n].numpy()], axis=1)
            image = Image.fromarray(pair)
            atomic_write(self.out_dir / "reconstructions" / f"{n:04d}_{f.stem}.png",
                         lambda fh, image=image: image.save(fh, format="PNG"))
        rows = "".join(f"{f}\t{float(p):.3f}\t{float(s):.4f}\n" for f, p, s in zip(self.files, r["psnr"], r["ssim"]))
        atomic_write_text(self.out_dir / "projection.tsv", "file\tpsnr_db\tssim\n" + rows)

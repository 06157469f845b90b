"""Writes a projection's latents, reconstructions and scores, gathered from every rank."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter

from latentnav.atomic import atomic_torch_save, atomic_write, atomic_write_text
from latentnav.directions_file import LATENTS_FORMAT

_KEYS = ("rows", "latents", "reconstructions", "psnr", "ssim")


class ProjectionWriter(BasePredictionWriter):
    """``<out>/latents.pt`` (``{"format", "latents" (N, *shape), "space", "generator": identity, "files"}``, and
    ``"noise"``: per-layer (N, 1, r, r) maps where the projection optimised them,
    read by ``latentnav edit --latents``), ``<out>/reconstructions/<n>_<name>.png`` (input | reconstruction)
    and ``<out>/projection.tsv`` (file, PSNR dB, SSIM). Each rank keeps its rows' results, saves them to
    ``<out>/.parts/rank<r>.pt`` at the end; after a barrier rank 0 puts them in file order and writes.

    Args:
        out_dir: output folder (shared by every node).
        files: the input files, in index order.
        space, generator_identity: recorded with the latents (the edit command checks them).
        crop_size: the crop the inputs were read with (for the input half of each pair).
    """

    def __init__(self, out_dir: str | Path, files: list, space: str, generator_identity: dict,
                 crop_size: int | None = None) -> None:
        super().__init__(write_interval="batch")
        self.out_dir, self.files, self.space, self.identity = Path(out_dir), [Path(f) for f in files], space, generator_identity
        self.crop_size = crop_size
        self.parts: dict[str, list] = {k: [] for k in _KEYS}
        self.result: dict = {}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        warnings.filterwarnings("ignore", message=".*Couldn't infer the batch indices.*")
        warnings.filterwarnings("ignore", message=".*`IterableDataset` has `__len__` defined.*")
        trainer.predict_loop.return_predictions = False
        self.parts = {k: [] for k in _KEYS}

    def write_on_batch_end(self, trainer, pl_module, prediction: dict, batch_indices, batch, batch_idx: int,
                           dataloader_idx: int = 0) -> None:
        for k in _KEYS:
            value = prediction[k]
            self.parts[k].append(torch.from_numpy(value) if isinstance(value, np.ndarray) else value)
        if "noise" in prediction:  # StyleGAN2's optimised noise maps: one (b, 1, r, r) tensor per layer
            for layer, n in enumerate(prediction["noise"]):
                self.parts.setdefault(f"noise{layer}", []).append(n)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        mine = {k: torch.cat(v) for k, v in self.parts.items() if v}
        folder = self.out_dir / ".parts"
        if trainer.world_size > 1:
            atomic_torch_save(mine, folder / f"rank{trainer.global_rank}.pt")
        trainer.strategy.barrier("projection_writer")
        if not trainer.is_global_zero:
            return
        if trainer.world_size > 1:
            found = [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(trainer.world_size)]
            found = [f for f in found if f]
            mine = {k: torch.cat([f[k] for f in found]) for k in found[0]}
            shutil.rmtree(folder, ignore_errors=True)
        order = mine["rows"].argsort()
        self.result = {k: v[order] for k, v in mine.items()}
        self.write(trainer)

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

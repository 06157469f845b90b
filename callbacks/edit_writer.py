"""Writes an edit's strip (PNG) and animation (GIF) from the frames of every rank."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter

from latentnav.atomic import atomic_torch_save, atomic_write
from latentnav.images import labelled_rows, tile, upscale


class EditWriter(BasePredictionWriter):
    """``<out_dir>/<tag>.png`` (rows = latents, columns = alphas, labelled) and ``<tag>.gif`` (there and back).

    Each rank keeps the frames of its rows (a few images a row, never the whole run), saves them
    atomically to ``<out_dir>/.parts_<tag>/rank<r>.pt`` at the end; after a barrier rank 0 puts the
    rows back in order, writes both files and removes the parts.

    Args:
        out_dir: the output folder (shared by every node).
        tag: the files' name.
        alphas: the columns' labels.
        scale: pixel upscaling of the outputs.
    """

    def __init__(self, out_dir: str, tag: str, alphas, scale: int = 3) -> None:
        super().__init__(write_interval="batch")
        self.out_dir, self.tag, self.alphas, self.scale = Path(out_dir), tag, [float(a) for a in alphas], scale
        self.rows: list[torch.Tensor] = []
        self.frames: list[np.ndarray] = []
        self.written: list[Path] = []

    @property
    def parts(self) -> Path:
        return self.out_dir / f".parts_{self.tag}"

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        warnings.filterwarnings("ignore", message=".*Couldn't infer the batch indices.*")
        warnings.filterwarnings("ignore", message=".*`IterableDataset` has `__len__` defined.*")
        trainer.predict_loop.return_predictions = False  # the frames are kept here, once
        self.rows, self.frames, self.written = [], [], []

    def write_on_batch_end(self, trainer, pl_module, prediction: dict, batch_indices, batch, batch_idx: int,
                           dataloader_idx: int = 0) -> None:
        self.rows.append(prediction["rows"])
        self.frames.append(prediction["frames"])

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size > 1:
            atomic_torch_save({"rows": torch.cat(self.rows) if self.rows else torch.zeros(0, dtype=torch.long),
                               "frames": torch.from_numpy(np.concatenate(self.frames, axis=1)) if self.frames else None},
                              self.parts / f"rank{trainer.global_rank}.pt")
        trainer.strategy.barrier("edit_writer")
        if not trainer.is_global_zero:
            return
        rows, frames = self.rows, self.frames
        if trainer.world_size > 1:
            parts = [torch.load(self.parts / f"rank{r}.pt", weights_only=True) for r in range(trainer.world_size)]
            rows = [p["rows"] for p in parts if p["frames"] is not None]
            frames = [p["frames"].numpy() for p in parts if p["frames"] is not None]
            shutil.rmtree(self.parts, ignore_errors=True)
        order = torch.cat(rows).argsort().numpy()
        self.written = write_edit(np.concatenate(frames, axis=1)[:, order], self.alphas, self.out_dir, self.tag,
                                  self.scale)


def write_edit(frames: np.ndarray, alphas: list[float], out_dir: Path, tag: str, scale: int = 3) -> list[Path]:
    """Frames uint8 (A, B, R, R, 3) -> ``<tag>.png`` (B rows x A columns, labelled) and ``<tag>.gif``."""
    from PIL import Image

    frames = upscale(frames, scale)
    a, b = frames.shape[:2]
    strip = tile(frames.swapaxes(0, 1))  # rows = latents, columns = alphas
    png, gif = out_dir / f"{tag}.png", out_dir / f"{tag}.gif"
    labelled = Image.fromarray(labelled_rows(strip, [f"sample {i}" for i in range(b)], [f"{x:+.1f}" for x in alphas],
                                             margin=60))
    atomic_write(png, lambda f: labelled.save(f, format="PNG"))
    images = [Image.fromarray(np.concatenate(list(frames[i]), axis=1)) for i in range(a)]
    images += images[-2:0:-1]  # there and back
    atomic_write(gif, lambda f: images[0].save(f, format="GIF", save_all=True, append_images=images[1:], duration=120,
                                               loop=0))
    return [png, gif]

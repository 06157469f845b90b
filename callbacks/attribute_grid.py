"""A labelled grid of validation images for TensorBoard.

Under each image: predicted attributes in green when right, in red when wrong (false
positive), and missed ones in orange with a leading minus (false negative).
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from latentnav.images import to_uint8

_GREEN, _RED, _ORANGE = (40, 170, 60), (220, 40, 40), (230, 140, 0)


def labelled_grid(
    images: torch.Tensor, probs: torch.Tensor, targets: torch.Tensor, names: list[str], scale: int = 4, columns: int = 8
) -> np.ndarray:
    """Draw a grid. images (N, 3, H, W) in [-1, 1]; probs and targets (N, K) in [0, 1].

    Returns uint8 (height, width, 3).
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    n, _, h, w = images.shape
    tile_w, line_h = max(w * scale, 112), 11
    pred, truth = (probs > 0.5).cpu().numpy(), (targets > 0.5).cpu().numpy()
    lines_max = int(max(1, (pred | truth).sum(1).max()))
    tile_h = h * scale + 4 + line_h * lines_max
    rows = (n + columns - 1) // columns
    canvas = Image.new("RGB", (columns * tile_w, rows * tile_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    pixels = to_uint8(images)
    for i in range(n):
        x0, y0 = (i % columns) * tile_w, (i // columns) * tile_h
        canvas.paste(Image.fromarray(pixels[i]).resize((w * scale, h * scale), Image.NEAREST), (x0, y0))
        y = y0 + h * scale + 2
        for k, name in enumerate(names):
            if pred[i, k] or truth[i, k]:
                colour = _GREEN if pred[i, k] and truth[i, k] else (_RED if pred[i, k] else _ORANGE)
                draw.text((x0 + 2, y), name if pred[i, k] else "-" + name, fill=colour, font=font)
                y += line_h
    return np.asarray(canvas)


class AttributeGrid(pl.Callback):
    """Logs :func:`labelled_grid` of the first validation batch every ``every_n_epochs``.

    Works with any module whose ``forward`` returns attribute logits and which has an
    ``attributes`` list of names; does nothing without a TensorBoard logger. The forward
    runs on rank 0 alone, which suits DDP; under FSDP/DeepSpeed (sharded weights) leave it out.
    """

    def __init__(self, num_images: int = 16, scale: int = 4, every_n_epochs: int = 1) -> None:
        self.num_images = num_images
        self.scale = scale
        self.every_n_epochs = every_n_epochs

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx != 0 or trainer.sanity_checking or not trainer.is_global_zero:
            return
        if trainer.current_epoch % self.every_n_epochs or not isinstance(trainer.logger, TensorBoardLogger):
            return
        images, targets = batch[0][: self.num_images], batch[1][: self.num_images]
        with torch.no_grad():
            probs = torch.sigmoid(pl_module(images).float())
        grid = labelled_grid(images, probs, targets, list(pl_module.attributes), scale=self.scale)
        trainer.logger.experiment.add_image("val/labelled_samples", grid, trainer.global_step, dataformats="HWC")

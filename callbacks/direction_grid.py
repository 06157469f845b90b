"""Every N training steps: an edit grid of all of the model's directions, to TensorBoard."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger

from latentnav.lightning_modules.edit_rendering import edit_grid


class DirectionGrid(pl.Callback):
    """Renders ``pl_module.directions()`` with ``pl_module.generator`` every ``every_n_steps``
    training steps (and at the end of fit, also as ``edit_grid.png`` in the log folder).

    Args:
        every_n_steps: 0 = only at the end.
        alphas: shifts along each unit direction (columns).
        seed: the sample every row starts from (a class-conditional generator's: in class ``classes_at([0])``,
            the first chosen class).
        scale: pixel upscaling.
    """

    def __init__(self, every_n_steps: int = 500, alphas: Sequence[float] = (-6, -3, 0, 3, 6), seed: int = 0,
                 scale: int = 1) -> None:
        self.every_n_steps, self.alphas, self.seed, self.scale = every_n_steps, tuple(alphas), seed, scale
        self._log_dir: Optional[str] = None

    def _render(self, pl_module) -> np.ndarray:
        G, space = pl_module.generator, getattr(pl_module, "space", "z")
        classes = G.classes_at([0])  # None: unconditional
        latent = G.sample(1, seed=self.seed, space=space, classes=classes)
        directions = pl_module.directions()
        names = getattr(pl_module, "direction_names", None) or [f"d{i:02d}" for i in range(len(directions))]
        return edit_grid(G, directions, space, latent, self.alphas, names, self.scale, classes=classes)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every_n_steps and step % self.every_n_steps == 0 and trainer.is_global_zero \
                and isinstance(trainer.logger, TensorBoardLogger):
            trainer.logger.experiment.add_image("directions/edit_grid", self._render(pl_module), step, dataformats="HWC")

    def setup(self, trainer, pl_module, stage: str) -> None:
        # trainer.log_dir is a broadcast under DDP: read it here, where every rank is, never
        # from code that only rank 0 runs (the ranks' collectives would cross).
        self._log_dir = trainer.log_dir

    def on_fit_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        grid = self._render(pl_module)
        if isinstance(trainer.logger, TensorBoardLogger):
            trainer.logger.experiment.add_image("directions/edit_grid", grid, trainer.global_step, dataformats="HWC")
        if self._log_dir:
            from PIL import Image

            Path(self._log_dir).mkdir(parents=True, exist_ok=True)
            Image.fromarray(grid).save(Path(self._log_dir) / "edit_grid.png")

"""At the end of fit: write the model's directions as ``directions.npz`` (the format every method shares)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import pytorch_lightning as pl


class DirectionExport(pl.Callback):
    """Writes ``pl_module.directions()`` (K, d) to ``directions.npz`` in the log folder and, when
    ``export_to`` is given and the final validation is finite, to that stable path as well (atomically;
    a run that diverged, which the divergence guard stops before fit end, exports nothing). Names are ``pl_module.direction_names``
    when the module has them, else ``d00``, ``d01``, ...; the method is ``pl_module.method_name``;
    the training's wall time and the generator's identity are recorded so the edit and compare commands can check it."""

    def __init__(self, export_to: Optional[str] = None) -> None:
        self.export_to = export_to
        self._t0: Optional[float] = None
        self._log_dir: Optional[str] = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # trainer.log_dir is a broadcast under DDP: read where every rank is, in the same order
        # on each (at fit end another callback may already have returned early on rank > 0).
        self._log_dir = trainer.log_dir

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        log_dir = self._log_dir
        if not trainer.is_global_zero:
            return
        from latentnav.callbacks.divergence_guard import check_final_validation
        from latentnav.directions_file import write_directions

        if self.export_to:
            check_final_validation(trainer)  # a stable export only from a sane run: the old one stays
        directions = pl_module.directions().cpu()
        names = getattr(pl_module, "direction_names", None) or [f"d{i:02d}" for i in range(len(directions))]
        method = getattr(pl_module, "method_name", type(pl_module).__name__)
        space = getattr(pl_module, "space", "z")
        identity = pl_module.generator.identity
        seconds = time.perf_counter() - self._t0 if self._t0 is not None else None  # the training's wall time
        targets = [Path(log_dir or ".") / "directions.npz"] + ([Path(self.export_to)] if self.export_to else [])
        for path in targets:
            write_directions(path, directions, names, method, space, identity, seconds=seconds)
        print(f"\nlatentnav: directions written to {', '.join(map(str, targets))}")

"""Judge a training generator with the frozen attribute classifier, and show its samples."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from latentnav.lightning_modules.annotator import load_annotator
from latentnav.lightning_modules.generator_quality import AttributeStatistics, format_quality, quality_summary


class GeneratorQuality(pl.Callback):
    """Every ``every_n_steps`` global steps: sample ``num_samples`` images, annotate them,
    and log confident fractions and frequency gaps (``quality/...``) plus a fixed-z grid.

    Real frequencies come from the same classifier on up to ``num_real`` images of the
    datamodule's validation split, measured once at the start of fitting. Works with a
    module whose ``forward(z)`` returns images in [-1, 1] and whose ``hparams.z_dim`` is
    the latent size. Samples are split across DDP ranks; the statistics are synced.
    """

    def __init__(self, annotator: str = "demo", num_samples: int = 2000, num_real: int = 2000,
                 every_n_steps: int = 2000, batch_size: int = 250, seed: int = 1234) -> None:
        self.annotator_source = annotator
        self.num_samples = num_samples
        self.num_real = num_real
        self.every_n_steps = every_n_steps
        self.batch_size = batch_size
        self.seed = seed
        self.last: dict[str, float] = {}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Kept outside the LightningModule: never trained, never checkpointed.
        self.annotator = load_annotator(self.annotator_source, map_location=pl_module.device)
        self.names = self.annotator.attributes

    def _stats(self, device) -> AttributeStatistics:
        return AttributeStatistics(len(self.names)).to(device)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.annotator.to(pl_module.device)
        stats, seen = self._stats(pl_module.device), 0
        limit = self.num_real // trainer.world_size
        with torch.no_grad():
            for images, *_ in trainer.datamodule.val_dataloader():
                images = images[: limit - seen].to(pl_module.device)
                stats.update(self.annotator(images))
                seen += len(images)
                if seen >= limit:
                    break
        self.real_frequency = stats.compute()["frequency"]

    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        stats = self._stats(pl_module.device)
        # Every rank draws the same latents and judges its slice: 1 and N processes agree.
        z_all = torch.randn(self.num_samples, pl_module.hparams.z_dim, generator=torch.Generator().manual_seed(self.seed))
        with torch.no_grad():
            for z in z_all[trainer.global_rank::trainer.world_size].split(self.batch_size):
                stats.update(self.annotator(pl_module(z.to(pl_module.device)).float()))
        return quality_summary(stats.compute(), self.real_frequency, self.names)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step == 0 or step % self.every_n_steps:
            return
        self.last = self.measure(trainer, pl_module)
        logger = trainer.logger
        if trainer.is_global_zero and logger is not None:
            # Straight to the logger: self.log would wait for log_every_n_steps.
            logger.log_metrics({f"quality/{k}": v for k, v in self.last.items()}, step=step)
        if trainer.is_global_zero and isinstance(logger, TensorBoardLogger):
            import torchvision

            grid = torchvision.utils.make_grid(pl_module.sample_grid().float(), nrow=8, normalize=True, value_range=(-1, 1))
            logger.experiment.add_image("samples/fixed_z", grid, step)
            logger.experiment.add_text("quality/table", "```\n" + format_quality(self.last, self.names) + "\n```", step)

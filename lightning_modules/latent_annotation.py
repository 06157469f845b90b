"""Annotation as a Lightning predict job: latent indices in, (latents, classifier logits) out.

    train.py predict --config configs/annotate/demo.yaml [--trainer.devices N --trainer.strategy ddp]

The Trainer brings the devices, the ranks and the precision; :class:`latentnav.datamodules.latent_indices.
LatentIndicesDataModule` gives each rank whole shards of indices and
:class:`latentnav.callbacks.annotation_writer.AnnotationWriter` writes them.
"""

from __future__ import annotations

from typing import Any, Optional


from latentnav.generators.base import check_finite
from latentnav.lightning_modules.annotator import load_annotator
from latentnav.lightning_modules.frozen_generator import FrozenGeneratorModule


class LatentAnnotation(FrozenGeneratorModule):
    """Frozen generator + frozen attribute classifier; nothing to train.

    ``predict_step`` on a batch ``{"indices": (B,) int64, "shard": int, "seed": int}`` returns
    ``{"shard", "indices", "latents": (B, *latent_shape) float32, "logits": (B, K) float32}``,
    with latent i = ``generator.latents_at([i], seed, space)``: the same on any rank, batch size
    or process count. A class-conditional generator renders latent i in class ``generator.classes_at([i])``
    (the chosen ``classes``' i % n-th; the store's key records the choice). Under ``--trainer.precision bf16-mixed`` the generator and classifier run
    in autocast (see bench/RESULTS.md for how far the logits move); latents stay float32.

    Args:
        generator, generator_options: the frozen generator (``latentnav.generators.load_generator``).
        annotator: the frozen attribute classifier (``"demo"`` or a file).
        space: latent space to sample and store (``z``; ``w`` for StyleGAN2).
    """

    def __init__(self, generator: str = "demo", annotator: str = "demo", space: str = "z",
                 generator_options: Optional[dict[str, Any]] = None) -> None:
        super().__init__(generator, generator_options)
        self.save_hyperparameters()
        self.generator.latent_shape(space)  # an unsupported space is a one-line error now
        self.space = space
        self.annotator = load_annotator(annotator)

    @property
    def attributes(self) -> list[str]:
        return list(self.annotator.attributes)

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        latents = self.generator.latents_at(batch["indices"], int(batch["seed"]), self.space).to(self.device)
        images = self.generator.synthesize(latents, self.space, classes=self.generator.classes_at(batch["indices"]))
        check_finite(images, batch["indices"], "annotation")  # never NaN in the store
        logits = self.annotator.logits(images)
        return {"shard": int(batch["shard"]), "indices": batch["indices"].cpu(),
                "latents": latents.float().cpu(), "logits": logits.float().cpu()}

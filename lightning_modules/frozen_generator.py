"""Base class of every LightningModule that works around a frozen, pretrained generator."""

from __future__ import annotations

from typing import Any, Optional

import pytorch_lightning as pl

from latentnav.generators import load_generator
from latentnav.errors import ConfigError


class FrozenGeneratorModule(pl.LightningModule):
    """Holds ``self.generator`` (a :class:`latentnav.generators.FrozenGenerator`) and keeps it frozen.

    - loaded through ``load_generator(generator, **generator_options)`` and frozen before
      Lightning or DDP see it (no gradients, eval mode that ``train()`` cannot undo);
    - never written into checkpoints: its keys are dropped on save and loading is not
      strict, so it is always reloaded from its source (a StyleGAN2 can be ~120 MB);
    - identified in every checkpoint (source, sha256, class); resuming or loading against
      a different generator file fails with a clear error.

    Subclasses call ``super().__init__(generator, generator_options)`` first and then
    ``self.save_hyperparameters()``: the hyper-parameters keep the generator's source,
    never its weights.
    """

    PREFIX = "generator."

    def __init__(self, generator: str = "demo", generator_options: Optional[dict[str, Any]] = None) -> None:
        super().__init__()
        from latentnav.generators import FrozenGenerator

        # A generator already loaded (e.g. by a command that holds it) is used as it is.
        self.generator = generator if isinstance(generator, FrozenGenerator) else \
            load_generator(generator, **(generator_options or {}))
        self.strict_loading = False

    def requires_grad_(self, requires_grad: bool = True) -> "FrozenGeneratorModule":
        # nn.Module.requires_grad_ sets every parameter directly: re-freeze the generator after it.
        super().requires_grad_(requires_grad)
        self.generator.requires_grad_(False)
        return self

    def unfreeze(self) -> None:
        super().unfreeze()
        self.generator.requires_grad_(False)
        self.generator.train(False)

    def on_train_start(self) -> None:
        # Whatever happened in between, training starts with the generator frozen.
        self.generator.requires_grad_(False)
        self.generator.train(False)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith(self.PREFIX)}
        checkpoint["generator_identity"] = dict(self.generator.identity)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("generator_identity")
        if saved is None:
            raise ConfigError("checkpoint has no generator identity: it was not written by a generator-based module")
        current = self.generator.identity
        if saved.get("sha256") != current.get("sha256"):
            raise ConfigError(
                f"checkpoint was made with generator {saved.get('source')} (sha256 {str(saved.get('sha256'))[:12]}), "
                f"but this run loads {current.get('source')} (sha256 {str(current.get('sha256'))[:12]}); "
                "pass the same generator to resume"
            )
